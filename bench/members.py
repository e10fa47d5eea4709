"""Roster import at scale: 1,000,000 members over 100,000 branches through the CLI, PostgreSQL.

    python -m bench.members [--members 1000000] [--branches 100000] [--keep-db]

Builds a fresh PostgreSQL database `bench_members` (the tree set-wise with `bench.common`, not
timed), writes a CSV roster (姓名, 支部编码, 党小组编码, 类别, 入党日期, 党员编号, 手机号; every
member numbered and with a mobile number), then times, each in a child process:

1. `dangjian members import FILE --max-rows N` (the first import: every member created);
2. the same command again (the re-import: every member found unchanged);

and reports wall time and the child's peak RSS (`resource.getrusage(RUSAGE_CHILDREN)`, each
child measured alone: the maximum over children so far is taken, so the first run is the
baseline for the second). Goal: ≤ 30 s and ≤ 500 MB for the first import. JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from bench.common import TreeShape, analyze, build_tree, drop_pg, emit, fresh_pg, migrated_engine
from bench.common import note as log

DB = "bench_members"


def write_roster(path: Path, members: int, branches: int) -> int:
    """Write the CSV roster; return its size in bytes."""
    start = date(1980, 1, 1)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("姓名,支部编码,党小组编码,类别,入党日期,党员编号,手机号\n")
        lines = []
        for n in range(members):
            branch = f"S{n % branches + 1:06d}"
            joined = start + timedelta(days=n % 15_000)
            category = "预备党员" if n % 20 == 0 else "正式党员"
            lines.append(f"党员{n:07d},{branch},,{category},{joined},M{n:08d},13{n:09d}\n")
            if len(lines) == 50_000:
                out.writelines(lines)
                lines = []
        out.writelines(lines)
    return path.stat().st_size


def run_cli(url: str, *args: str) -> tuple[float, float, str]:
    """Run `dangjian …` in a child process; return (seconds, peak RSS MB of children, output)."""
    env = {**os.environ, "DATABASE_URL": url}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        raise SystemExit(f"dangjian {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed, peak, done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--branches", type=int, default=100_000)
    parser.add_argument("--keep-db", action="store_true", help="leave bench_members in place")
    opts = parser.parse_args()
    url = fresh_pg(DB)
    engine = migrated_engine(url)
    tree_s = build_tree(engine, TreeShape(branches=opts.branches))
    analyze(engine, "organisation")
    engine.dispose()
    log(f"tree of {opts.branches:,} branches built in {tree_s:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "roster.csv"
        size = write_roster(path, opts.members, opts.branches)
        log(f"roster of {opts.members:,} members: {size / 2**20:.1f} MB")
        cmd = ("members", "import", str(path), "--max-rows", str(opts.members))
        for label in ("first import", "re-import"):
            seconds, peak, output = run_cli(url, *cmd)
            log(f"{label}: {seconds:.1f} s, peak RSS {peak:.0f} MB — {output}")
            emit(
                {
                    "bench": "members_import",
                    "run": label,
                    "backend": "postgresql",
                    "members": opts.members,
                    "branches": opts.branches,
                    "file_mb": round(size / 2**20, 1),
                    "seconds": round(seconds, 2),
                    "peak_rss_mb": round(peak),
                    "output": output,
                }
            )
    if not opts.keep_db:
        drop_pg(DB)


if __name__ == "__main__":
    main()

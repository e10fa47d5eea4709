"""The committee 台账 of 100,000 runs on PostgreSQL: time and peak memory of the export.

Data (not timed), on a fresh PostgreSQL database `bench_ledger`, by COPY as `bench.sweep` loads it:
1 bureau → hospitals → general branches → 100,000 branches, one campaign of
`chuangxian_zhengyou` with one run per branch in its first five stages; every 10th run graded
(`好`) by a 定级 decision record, every 7th overdue at escalation level 1. Then, per repeat, a
fresh Python process writes the bureau's summary workbook (`states.ledger.committee.write`, the
same call `dangjian export ledger --campaign … --org B` and the background job make) and reports
its wall time and CPU time (the machine may be shared: the CPU time is the export's own work,
the database server's not included), its resident memory when the export starts (after the imports and the first
connection) and its peak during the export (the high-water mark reset at the start through
`/proc/self/clear_refs`, read from `VmHWM`; `resource.getrusage` where that is not available).

    .venv/bin/python -m bench.ledger                 # about 2 minutes
    .venv/bin/python -m bench.ledger --runs 20000    # a smaller case

Goal: ≤ 60 s and ≤ 300 MB peak for 100,000 runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import emit, fresh_pg, migrated_engine, note

DBNAME = "bench_ledger"
GOAL_SECONDS = 60
GOAL_MB = 300


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def peak_mb() -> float:
    """This process's peak resident memory, in MB: since `reset_peak` where Linux allows it."""
    hwm = _status_mb("VmHWM")
    return hwm or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> float:
    """Start the peak over from the current resident memory (Linux `clear_refs` 5); return it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def child(url: str, campaign_id: int, org_id: int, out: Path) -> dict[str, Any]:
    """Write the committee workbook once in this process; return time, rows and memory."""
    from sqlmodel import Session

    from states.db import make_engine, read_session
    from states.ledger import committee
    from states.models import Campaign, Organisation

    engine = make_engine(url)
    with Session(engine) as s:
        s.get(Campaign, campaign_id)  # connect once before the baseline
    before = reset_peak()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with read_session(engine) as s:
        campaign, org = s.get(Campaign, campaign_id), s.get(Organisation, org_id)
        assert campaign is not None and org is not None
        rows = committee.write(s, committee.Scope(campaign, org), out)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "runs": rows,
        "seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),  # this process's CPU time: what a busy machine can't hide
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak_mb(), 1),
        "file_mb": round(out.stat().st_size / 2**20, 2),
    }


def measure(url: str, campaign_id: int, org_id: int) -> dict[str, Any]:
    """Run `child` in a fresh interpreter and return what it reports."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ledger.xlsx"
        args = ["--child", url, str(campaign_id), str(org_id), str(out)]
        done = subprocess.run(
            [sys.executable, "-m", "bench.ledger", *args],
            capture_output=True,
            text=True,
            check=True,
        )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def grade_and_overdue(engine: Any, campaign_id: int) -> None:
    """Every 10th run graded 好 by a decision record; every 7th overdue at level 1."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO evidence (org_id, run_id, stage, kind, subject, data, created_at,"
                " status, version, on_behalf) SELECT org_id, id, stage, 'decision', '好',"
                " '{\"grade\": \"好\"}', now(), 'active', 1, false FROM run"
                " WHERE campaign_id = :c AND id % 10 = 0"
            ),
            {"c": campaign_id},
        )
        conn.execute(
            text(
                "INSERT INTO evidence_link (evidence_id, run_id, stage, linked_at)"
                " SELECT id, run_id, stage, now() FROM evidence WHERE kind = 'decision'"
            )
        )
        conn.execute(
            text(
                "UPDATE run SET deadline = now() - interval '3 days', escalation_level = 1"
                " WHERE campaign_id = :c AND id % 7 = 0"
            ),
            {"c": campaign_id},
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=4, metavar=("URL", "CAMPAIGN", "ORG", "OUT"))
    args = ap.parse_args()
    if args.child:
        url, campaign, org, out = args.child
        print(json.dumps(child(url, int(campaign), int(org), Path(out))))
        return
    from bench import sweep

    url = fresh_pg(DBNAME)
    engine = migrated_engine(url)
    world = sweep.build(engine, args.runs)
    grade_and_overdue(engine, world.campaign_id)
    sweep.vacuum(engine, "run", "evidence", "evidence_link")
    engine.dispose()
    for repeat in range(args.repeats):
        note(f"export {repeat + 1}/{args.repeats} of {args.runs:,} runs")
        result = measure(url, world.campaign_id, 1)
        emit(
            {
                "bench": "ledger",
                "case": "committee_summary",
                "repeat": repeat,
                **result,
                "goal_seconds": GOAL_SECONDS,
                "goal_mb": GOAL_MB,
            }
        )


if __name__ == "__main__":
    main()

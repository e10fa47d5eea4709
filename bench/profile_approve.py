"""Profile the final `approve` with py-spy: set up pending requests, then approve them.

    python -m bench.profile_approve --n 1500 --py-spy /tmp/baseline-venv/bin/py-spy

Setup as in `bench.transitions` (one campaign over N branches, each run with its meeting and
a pending advance request; not profiled). Then py-spy attaches to this process and samples the
approvals only (one connection, one `unit_of_work` each); its top lines by own time and by
total time go to stdout as JSON, with the approvals per second while sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from bench.common import (
    drop_pg,
    note,
)
from bench.transitions import _approve_all, _warm, pending_approvals
from states.db import make_engine


def top_lines(raw: Path, limit: int = 12) -> dict[str, list[tuple[str, float]]]:
    """From py-spy's collapsed stacks: the frames with most own samples and most total samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():  # a line py-spy was still writing when it was read
            continue
        frames = [f for f in stack.split(";") if f]
        count = int(n)
        samples += count
        if frames:
            own[frames[-1]] += count
        for f in set(frames):
            total[f] += count
    pct = 100.0 / max(samples, 1)
    return {
        "own": [(f, round(c * pct, 1)) for f, c in own.most_common(limit)],
        "total": [(f, round(c * pct, 1)) for f, c in total.most_common(limit * 3)],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1500)
    ap.add_argument("--py-spy", default="py-spy")
    ap.add_argument("--rate", type=int, default=250)
    ap.add_argument("--out", default="/tmp/approve-profile")
    ap.add_argument("--gil", action="store_true", help="sample only threads holding the GIL (CPU)")
    args = ap.parse_args()
    url, engine, approver, ids = pending_approvals("bench_profile", args.n, "profile")
    work = make_engine(url)
    _warm(work, 1)
    _approve_all(work, approver, ids[:50])  # per-process caches warm, as in a running service
    raw = Path(f"{args.out}.txt")
    cmd = [args.py_spy, "record", "--pid", str(os.getpid()), "--rate", str(args.rate)]
    cmd += [
        "--format",
        "raw",
        "--output",
        str(raw),
        "--nonblocking",
        *(["--gil"] if args.gil else []),
    ]
    spy = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # py-spy attached
    note("profiling the approvals")
    t0 = time.perf_counter()
    _approve_all(work, approver, ids[50:])
    secs = time.perf_counter() - t0
    spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    spy.wait()
    work.dispose()
    engine.dispose()
    drop_pg("bench_profile")
    out = {"approvals": len(ids) - 50, "per_s": round((len(ids) - 50) / secs, 1)}
    print(json.dumps({**out, **top_lines(raw)}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()

"""Launch a campaign over 100,000 branches: `launch_campaign` + commit, on PostgreSQL and SQLite.

Tree: 1 bureau → 100 hospitals → 1,000 general branches → 100,000 branches (党支部), inserted
set-wise on a freshly migrated database. Each repeat launches a new campaign over the same tree
(so the run table grows by 100,000 rows per repeat). Prints one JSON line per repeat and one
summary line (median seconds, runs/s) per backend.

    python -m bench.launch                       # PostgreSQL and SQLite, 3 repeats each
    python -m bench.launch --backends postgresql --repeats 5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import Session, col

from bench.common import (
    ROOT_CODE,
    TreeShape,
    build_tree,
    checkpoint,
    drop_pg,
    emit,
    fresh_pg,
    fresh_sqlite,
    machine,
    median,
    migrated_engine,
    note,
)
from states.campaigns import launch_campaign
from states.models import Run

TEMPLATE = "chuangxian_zhengyou"


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Build the tree on a fresh database of `backend`, then time `repeats` launches."""
    shape = TreeShape(
        branches=args.branches,
        branches_per_general=args.per_general,
        generals_per_hospital=args.per_hospital,
    )
    pg = backend == "postgresql"
    url = fresh_pg(args.pg_db) if pg else fresh_sqlite(Path(args.sqlite_path))
    engine = migrated_engine(url)
    note(f"{backend}: building {shape.total:,} organisations")
    tree_s = build_tree(engine, shape)
    note(f"{backend}: tree in {tree_s:.1f}s; launching {args.repeats}×")
    seconds: list[float] = []
    bad_counts: list[int] = []  # campaign.run_count values that disagree with the rows
    for i in range(args.repeats):
        checkpoint(engine)
        with Session(engine, expire_on_commit=False) as session:
            t0 = time.perf_counter()
            campaign = launch_campaign(
                session, template_key=TEMPLATE, root_code=ROOT_CODE, name=f"bench launch {i + 1}"
            )
            session.commit()
            secs = time.perf_counter() - t0
            runs = session.execute(
                select(func.count()).select_from(Run).where(col(Run.campaign_id) == campaign.id)
            ).scalar_one()
        assert runs == shape.branches, (runs, shape.branches)
        if campaign.run_count != runs and campaign.run_count not in bad_counts:
            bad_counts.append(campaign.run_count)
            note(f"{backend}: campaign.run_count is {campaign.run_count}, but {runs} runs exist")
        seconds.append(secs)
        emit(
            {
                "bench": "launch",
                "backend": backend,
                "repeat": i + 1,
                "runs": runs,
                "seconds": round(secs, 3),
                "runs_per_s": round(runs / secs, 1),
                "run_count_field": campaign.run_count,
            }
        )
    facts = machine(engine)
    engine.dispose()
    if not args.keep:
        if backend == "postgresql":
            drop_pg(args.pg_db)
        else:
            fresh_sqlite(Path(args.sqlite_path))
    med = median(seconds)
    summary = {
        "bench": "launch",
        "backend": backend,
        "summary": True,
        "runs": shape.branches,
        "organisations": shape.total,
        "tree_seconds": round(tree_s, 2),
        "repeats": len(seconds),
        "median_seconds": round(med, 3),
        "min_seconds": round(min(seconds), 3),
        "max_seconds": round(max(seconds), 3),
        "runs_per_s": round(shape.branches / med, 1),
        "run_count_field_wrong": bad_counts,
        "machine": facts,
    }
    emit(summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--backends", default="postgresql,sqlite", help="comma-separated")
    ap.add_argument("--branches", type=int, default=100_000)
    ap.add_argument("--per-general", type=int, default=100, help="branches per general branch")
    ap.add_argument("--per-hospital", type=int, default=10, help="general branches per hospital")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pg-db", default="bench_launch")
    ap.add_argument("--sqlite-path", default="bench/results/bench_launch.db")
    ap.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    args = ap.parse_args(argv)
    for backend in args.backends.split(","):
        bench_backend(backend.strip(), args)


if __name__ == "__main__":
    main()

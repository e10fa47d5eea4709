"""Building a personal deadline feed (`deadlines` + `feed_ics`) over a large reach, in-process.

    .venv/bin/python -m bench.calendar                      # PostgreSQL and SQLite, 10,000 branches
    .venv/bin/python -m bench.calendar --backends postgresql --branches 100000

Setup (not timed): a tree of `--branches` branches under 1 bureau (bench.common.build_tree), a
创先争优 campaign over all of them, an admin of the bureau (reach: every run; the feed stops at
`MAX_EVENTS`) and a branch secretary (one run). Timed: reading the deadlines and writing the
iCalendar bytes, `--repeats` times per user, cold (the rendered feed not in the process's cache)
and warm (the same feed polled again: read, then served from the cache); reported per backend
and user: median and max milliseconds, the read's share, events and bytes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from bench.common import (
    ROOT_CODE,
    TreeShape,
    build_tree,
    drop_pg,
    emit,
    fresh_pg,
    fresh_sqlite,
    machine,
    make_actor,
    median,
    migrated_engine,
    note,
)
from states.calfeed.ics import _render, feed_ics
from states.calfeed.service import deadlines
from states.campaigns import launch_campaign
from states.models import Organisation, Role
from states.users import Actor


def _feed_ms(engine: Any, actor: Actor) -> tuple[float, float, int, int]:
    """Milliseconds to read the deadlines and to return the bytes; events; bytes."""
    start = time.perf_counter()
    with Session(engine) as s:
        items = deadlines(s, actor)
    read = time.perf_counter()
    body = feed_ics(items, name="基准", base_url="http://127.0.0.1:8000")
    end = time.perf_counter()
    return (end - start) * 1000, (read - start) * 1000, len(items), len(body)


def _time_feed(engine: Any, actor: Actor, repeats: int) -> dict[str, Any]:
    """Cold (the rendered feed not cached) and warm (an unchanged feed polled again) timings."""
    cold: list[float] = []
    warm: list[float] = []
    reads: list[float] = []
    for _ in range(repeats):
        _render.cache_clear()
        total, read, events, size = _feed_ms(engine, actor)
        cold.append(total)
        reads.append(read)
        warm.append(_feed_ms(engine, actor)[0])
    return {
        "cold_ms_median": round(median(cold), 1),
        "cold_ms_max": round(max(cold), 1),
        "warm_ms_median": round(median(warm), 1),
        "read_ms_median": round(median(reads), 1),
        "events": events,
        "bytes": size,
    }


def bench_backend(backend: str, args: argparse.Namespace) -> None:
    pg = backend == "postgresql"
    url = fresh_pg(args.pg_db) if pg else fresh_sqlite(Path(args.sqlite_path))
    engine = migrated_engine(url)
    build_tree(engine, TreeShape(branches=args.branches))
    with Session(engine) as s:
        admin = make_actor(s, "bench_admin", ROOT_CODE, Role.ADMIN)
        launch_campaign(s, template_key="chuangxian_zhengyou", root_code=ROOT_CODE, actor=admin)
        s.commit()
        branch = s.execute(
            select(Organisation.code).where(Organisation.kind == "党支部").limit(1)
        ).scalar_one()
        secretary = make_actor(s, "bench_secretary", branch, Role.SECRETARY)
    note(f"{backend}: {args.branches} branches, campaign launched")
    for who, actor in (("admin", admin), ("secretary", secretary)):
        result = _time_feed(engine, actor, args.repeats)
        emit(
            {"bench": "calendar", "backend": backend, "branches": args.branches, "user": who}
            | result
        )
    emit({"bench": "calendar", "backend": backend, "machine": machine(engine)})
    engine.dispose()
    if pg:
        drop_pg(args.pg_db)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--branches", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--pg-db", default="bench_calendar")
    parser.add_argument("--sqlite-path", default="bench/results/calendar.db")
    args = parser.parse_args()
    for backend in args.backends:
        bench_backend(backend, args)


if __name__ == "__main__":
    main()

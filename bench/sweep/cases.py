"""The cases: ours against the SQL baseline per (runs, due), the Prefect flow, the whole run."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlmodel import Session

from bench.common import checkpoint, drop_pg, emit, fresh_pg, machine, migrated_engine, note
from bench.sweep.constants import RESULTS
from bench.sweep.data import World, build, fired_rows, reset, set_due
from bench.sweep.diagnose import analysis, explain_big
from bench.sweep.measure import StatementClock, ours
from bench.sweep.sql_baseline import baseline
from states import timers
from workflows import jobs

_SINK: list[Path] = []  # the results file, written line by line (a crash keeps what ran)


def keep(records: list[dict[str, Any]], rec: dict[str, Any]) -> None:
    """Record one result: in `records`, on stdout and in the results file."""
    records.append(rec)
    emit(rec)
    for path in _SINK:
        with path.open("a") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_case(
    world: World, due: int, repeats: int, records: list[dict[str, Any]], slow: float = 60.0
) -> None:
    note(f"case: {world.total:,} runs, {due:,} due")
    set_due(world, due)
    with Session(world.engine) as s:
        windows = timers.plan_deadlines(s, world.as_of).windows
    for r in range(repeats):
        if r and records[-1]["seconds"] + records[-1]["sql_seconds"] > slow:
            note(f"  one repeat took over {slow:.0f}s: no more repeats of this case")
            break
        if r:
            reset(world)
        load = loadavg()
        with StatementClock(world.engine) as clock:
            secs, fired, plan_s = ours(world)
        assert fired == due, (fired, due)
        assert fired_rows(world.engine) == due + world.total  # plus the past's
        assert fired_rows(world.engine, "outbox") == due
        with StatementClock(world.engine) as clock2:
            t0 = time.perf_counter()
            again = jobs.sweep(world.engine, "deadline_sweep", world.as_of).total
            second = time.perf_counter() - t0
        assert again == 0
        checkpoint(world.engine)
        t0 = time.perf_counter()
        b_fired = baseline(world, windows)
        b_secs = time.perf_counter() - t0
        assert b_fired == due, (b_fired, due)
        assert fired_rows(world.engine, "bench_outbox") == due
        t0 = time.perf_counter()
        assert baseline(world, windows) == 0
        b_second = time.perf_counter() - t0
        rec = {
            "bench": "sweep",
            "total": world.total,
            "due": due,
            "repeat": r + 1,
            "seconds": round(secs, 4),
            "fired": fired,
            "plan_seconds": round(plan_s, 4),
            "second_seconds": round(second, 4),
            "sql_seconds": round(b_secs, 4),
            "sql_second_seconds": round(b_second, 4),
            "statements": {k: round(v, 4) for k, v in clock.seconds.items()},
            "statement_calls": dict(clock.calls),
            "second_statements": {k: round(v, 4) for k, v in clock2.seconds.items()},
            "loadavg": load,
        }
        keep(records, rec)
        note(
            f"  repeat {r + 1}: ours {secs:.3f}s (fired {fired}), again {second:.3f}s; "
            f"SQL {b_secs:.3f}s, again {b_second:.3f}s"
        )


def prefect_case(world: World, url: str, repeats: int, records: list[dict[str, Any]]) -> None:
    """The same sweep through the Prefect flow, paired with direct calls (A B A B …)."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.testing.utilities import prefect_test_harness

    from workflows import flows

    t0 = time.perf_counter()
    with prefect_test_harness():
        startup = time.perf_counter() - t0
        note(f"Prefect test harness up in {startup:.1f}s (not timed below)")
        flows.deadline_sweep(as_of=world.as_of)  # warm: engine, flow registration
        for r in range(repeats):
            reset(world)
            t0 = time.perf_counter()
            direct = jobs.sweep(world.engine, "deadline_sweep", world.as_of).total
            direct_s = time.perf_counter() - t0
            reset(world)
            t0 = time.perf_counter()
            result = flows.deadline_sweep(as_of=world.as_of)
            flow_s = time.perf_counter() - t0
            counts = result.get("counts", result) if isinstance(result, dict) else {}
            fired = sum(int(v) for v in counts.values())
            assert fired == direct == world.due, (fired, direct, world.due)
            rec = {
                "bench": "sweep_prefect",
                "total": world.total,
                "due": world.due,
                "repeat": r + 1,
                "flow_seconds": round(flow_s, 4),
                "direct_seconds": round(direct_s, 4),
                "fired": fired,
                "harness_startup_seconds": round(startup, 1),
            }
            keep(records, rec)
            note(f"  Prefect flow {flow_s:.3f}s, direct {direct_s:.3f}s")


def run_bench(args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    sink = Path(args.jsonl)
    sink.write_text("")
    _SINK[:] = [sink]
    records: list[dict[str, Any]] = []
    cases: dict[int, list[int]] = defaultdict(list)
    for spec in args.cases.split(","):
        total, due = (int(float(x)) for x in spec.split(":"))
        cases[total].append(due)
    facts: dict[str, Any] = {}
    loads: dict[str, Any] = {}
    for total in sorted(cases):
        url = fresh_pg(args.db)
        engine = migrated_engine(url)
        world = build(engine, total)
        loads[str(total)] = world.load_seconds
        for due in cases[total]:
            run_case(world, due, args.repeats, records, args.slow)
        if total == max(cases):
            facts = machine(engine)
            main_due = args.analyse_due if args.analyse_due in cases[total] else cases[total][0]
            if world.due != main_due:
                set_due(world, main_due)
            analysis(world, records)
            big = max(cases[total])
            if big > main_due:
                explain_big(world, big)
                set_due(world, main_due)
            if not args.skip_prefect:
                prefect_case(world, url, args.repeats, records)
        engine.dispose()
        if not args.keep:
            drop_pg(args.db)
    meta = {
        "meta": True,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": shlex.join([".venv/bin/python", "-m", "bench.sweep", *sys.argv[1:]]),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        "machine": facts,
        "load_seconds": loads,
        "batch": timers.BATCH,
        "repeats": args.repeats,
    }
    keep(records, meta)

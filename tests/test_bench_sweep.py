"""Smoke test of the sweep benchmark at a tiny size: its data and one sweep, ours and the SQL's."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bench import sweep as bench_sweep
from states import timers
from workflows import jobs


def _scalar(engine: Engine, sql: str, **params: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def test_builder_and_one_sweep_fire_exactly_the_runs_made_due(pg_engine: Engine) -> None:
    try:
        _builder_and_one_sweep(pg_engine)
    finally:  # the baseline's scratch tables must not outlive the test (schema checks follow)
        with pg_engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS bench_timer_fired, bench_outbox CASCADE"))


def _builder_and_one_sweep(pg_engine: Engine) -> None:
    world = bench_sweep.build(pg_engine, 2_000)
    assert _scalar(pg_engine, "SELECT count(*) FROM run") == 2_000
    assert _scalar(pg_engine, "SELECT count(*) FROM organisation WHERE kind = '党支部'") == 2_000
    # Every branch's path ends with its own code, under its parent's path.
    assert (
        _scalar(
            pg_engine,
            "SELECT count(*) FROM organisation o JOIN organisation p ON p.id = o.parent_id "
            "WHERE o.path <> p.path || o.code || '/' OR o.depth <> p.depth + 1",
        )
        == 0
    )

    bench_sweep.set_due(world, 200)
    report = jobs.sweep(pg_engine, "deadline_sweep", world.as_of)
    assert report.total == 200
    assert report.counts == {"reminder_L3": 100, "overdue_L1": 100}
    # Plus the one fired timer of the past per run that the builder loads.
    assert _scalar(pg_engine, "SELECT count(*) FROM timer_fired") == 2_000 + 200
    assert _scalar(pg_engine, "SELECT count(*) FROM timer_fired WHERE as_of > due") == 100
    assert _scalar(pg_engine, "SELECT count(*) FROM outbox") == 200
    assert _scalar(pg_engine, "SELECT count(*) FROM run WHERE escalation_level = 1") == 100
    # Nothing is due right after.
    assert jobs.sweep(pg_engine, "deadline_sweep", world.as_of).total == 0

    # The hand-written SQL baseline fires the same runs into its scratch tables, once.
    with Session(pg_engine) as s:
        windows = timers.plan_deadlines(s, world.as_of).windows
    bench_sweep.reset(world)
    assert bench_sweep.baseline(world, windows) == 200
    assert bench_sweep.baseline(world, windows) == 0
    assert _scalar(pg_engine, "SELECT count(*) FROM bench_outbox") == 200
    assert (
        _scalar(
            pg_engine,
            "SELECT count(*) FROM bench_timer_fired b JOIN run r ON r.id = b.run_id "
            "WHERE b.due = r.deadline AND b.as_of = :as_of",
            as_of=world.as_of,
        )
        == 200
    )
    assert _scalar(pg_engine, "SELECT count(*) FROM run WHERE escalation_level = 1") == 100

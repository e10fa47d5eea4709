"""Data, not timed: the tree, the campaign, the runs and the past's fired timers by COPY; the due set per case."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bench.common import TreeShape, build_tree, checkpoint, copy_rows, note
from bench.sweep.constants import (
    AS_OF,
    FUTURE_DAYS,
    FUTURE_FROM,
    RUN_COLUMNS,
    TEMPLATE,
    TIMER_COLUMNS,
)
from states import timers
from states.campaigns import freeze_template
from states.catalog import DONE, get_template
from states.models import Campaign
from states.schedule import dump_schedule, parse_schedule
from states.timeutil import end_of_local_day, local_date


@dataclass
class World:
    """A loaded database: N runs of one campaign, and the deadlines that are due at `as_of`."""

    engine: Engine
    total: int
    campaign_id: int
    as_of: datetime
    future: list[datetime]
    reminder_due: list[datetime]  # deadlines inside the 3-working-day reminder window
    overdue_due: list[datetime]  # deadlines inside the level-1 overdue window
    horizon: datetime  # every due deadline is at or before this; every other one after
    due: int = 0
    load_seconds: dict[str, float] = field(default_factory=dict)


def _days_in(after: datetime | None, upto: datetime, today: date) -> list[datetime]:
    """Dated deadlines (end of a local day) inside the window (`after`, `upto`]."""
    out = []
    day = today - timedelta(days=40)
    while end_of_local_day(day) <= upto:
        eod = end_of_local_day(day)
        if after is None or eod > after:
            out.append(eod)
        day += timedelta(days=1)
    return out


def future_index(run_id: int) -> int:
    """Which of the future deadlines run `run_id` gets (the SQL of `set_due` uses the same)."""
    return (run_id * 7919) % FUTURE_DAYS


def insert_campaign(engine: Engine, launched_at: datetime) -> int:
    """The campaign row as `launch_campaign` writes it (template frozen, default schedule)."""
    tpl = get_template(TEMPLATE)
    with Session(engine, expire_on_commit=False) as session:
        version = freeze_template(session, tpl)
        plan = parse_schedule(tpl, None, local_date(launched_at).year)
        campaign = Campaign(
            name=f"{tpl.name}（基准）",
            template_version_id=version.id or 0,
            template_key=tpl.key,
            template_version=tpl.version,
            root_org_id=1,
            kinds=list(tpl.participants),
            schedule=dump_schedule(plan),
            launched_at=launched_at,
        )
        session.add(campaign)
        session.commit()
        return campaign.id or 0


def build(engine: Engine, total: int, as_of: datetime = AS_OF) -> World:
    """Load the tree, the campaign and `total` runs (none due yet) into a migrated database."""
    today = local_date(as_of)
    launched = as_of - timedelta(days=20)
    shape = TreeShape(branches=total)
    note(f"loading {shape.total:,} organisations (COPY)")
    tree_s = build_tree(engine, shape)
    campaign_id = insert_campaign(engine, launched)
    with Session(engine) as session:
        windows = timers.plan_deadlines(session, as_of).windows
    reminder = max((w for w in windows if w.kind == timers.REMINDER), key=lambda w: w.level)
    overdue = next(w for w in windows if w.kind == timers.OVERDUE and w.level == 1)
    reminder_due = _days_in(reminder.after, reminder.upto, today)
    overdue_due = _days_in(overdue.after, overdue.upto, today)
    horizon = max(w.upto for w in windows if w.kind == timers.REMINDER)
    future = [end_of_local_day(today + timedelta(days=FUTURE_FROM + k)) for k in range(FUTURE_DAYS)]
    assert future[0] > horizon and reminder_due and overdue_due
    tpl = get_template(TEMPLATE)
    stages = tpl.stage_ids[:5]
    s_base = 2 + shape.hospitals + shape.generals
    note(f"loading {total:,} runs (COPY)")
    t0 = time.perf_counter()

    def rows() -> Iterator[tuple[Any, ...]]:
        for i in range(1, total + 1):
            yield (
                i,
                campaign_id,
                s_base + i - 1,
                stages[i % len(stages)],
                launched,
                future[future_index(i)],
                1,
                None,
                0,
                None,
            )
            if i % 250_000 == 0:
                note(f"  {i:,} runs")

    copy_rows(engine, "run", RUN_COLUMNS, rows())
    note(f"loading {total:,} fired timers of the past (COPY)")
    past_due = end_of_local_day(local_date(launched) + timedelta(days=5))
    past_as_of = launched + timedelta(days=2)

    def history() -> Iterator[tuple[Any, ...]]:
        # Each run was reminded 3 days before the deadline of its first stage: a sweep's
        # NOT EXISTS and unique key meet a `timer_fired` as large as `run`, as in production.
        for i in range(1, total + 1):
            yield (
                i,
                i,
                stages[0],
                timers.REMINDER,
                3,
                past_due,
                "",
                campaign_id,
                past_as_of,
                past_as_of,
            )

    copy_rows(engine, "timer_fired", TIMER_COLUMNS, history())
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE campaign SET run_count = :n WHERE id = :id"),
            {"n": total, "id": campaign_id},
        )
    runs_s = time.perf_counter() - t0
    with engine.begin() as conn:
        conn.execute(text(SCRATCH))
        conn.execute(text("INSERT INTO bench_timer_fired SELECT * FROM timer_fired"))
    vacuum(engine, "run", "campaign", "timer_fired", "bench_timer_fired")
    note(f"loaded: tree {tree_s:.1f}s, runs and fired timers {runs_s:.1f}s")
    world = World(engine, total, campaign_id, as_of, future, reminder_due, overdue_due, horizon)
    world.load_seconds = {"tree": round(tree_s, 2), "runs": round(runs_s, 2)}
    return world


def vacuum(engine: Engine, *tables: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {', '.join(tables)}"))


def set_due(world: World, due: int) -> None:
    """Make exactly `due` runs (every total/due-th id) due at `as_of`; all others in the future."""
    stride = world.total // due
    assert stride >= 1 and stride * due <= world.total
    with world.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE run SET deadline = (CAST(:fut AS timestamptz[]))"
                f"[1 + (id::bigint * 7919) % {FUTURE_DAYS}], escalation_level = 0 "
                "WHERE deadline <= :horizon"
            ),
            {"fut": world.future, "horizon": world.horizon},
        )
        conn.execute(
            text(
                "UPDATE run SET escalation_level = 0, completed_at = NULL, "
                "stage = CASE WHEN stage = :done THEN 'strive' ELSE stage END, "
                "deadline = CASE WHEN ((id - 1) / :stride) % 2 = 0 "
                "THEN (CAST(:rem AS timestamptz[]))"
                "[1 + ((id - 1) / :stride / 2) % cardinality(CAST(:rem AS timestamptz[]))] "
                "ELSE (CAST(:ovd AS timestamptz[]))"
                "[1 + ((id - 1) / :stride / 2) % cardinality(CAST(:ovd AS timestamptz[]))] END "
                "WHERE (id - 1) % :stride = 0 AND id <= :last"
            ),
            {
                "stride": stride,
                "last": stride * due,
                "rem": world.reminder_due,
                "ovd": world.overdue_due,
                "done": DONE,
            },
        )
        n = conn.execute(
            text("SELECT count(*) FROM run WHERE deadline <= :h"), {"h": world.horizon}
        ).scalar_one()
    assert n == due, (n, due)
    world.due = due
    reset(world)


SCRATCH = """
CREATE TABLE IF NOT EXISTS bench_timer_fired (LIKE timer_fired INCLUDING ALL);
CREATE TABLE IF NOT EXISTS bench_outbox (LIKE outbox INCLUDING ALL);
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'bench_tf_run_fk') THEN
    ALTER TABLE bench_timer_fired ADD CONSTRAINT bench_tf_run_fk
      FOREIGN KEY (run_id) REFERENCES run (id);
    ALTER TABLE bench_timer_fired ADD CONSTRAINT bench_tf_campaign_fk
      FOREIGN KEY (campaign_id) REFERENCES campaign (id);
  END IF;
END $$;
"""


def reset(world: World) -> None:
    """Forget every fired timer and notice (ours and the baseline's); levels back to 0."""
    with world.engine.begin() as conn:
        conn.execute(text(SCRATCH))
        for table in ("timer_fired", "bench_timer_fired"):  # this sweep's rows, not the past's
            conn.execute(text(f"DELETE FROM {table} WHERE as_of = :t"), {"t": world.as_of})
        conn.execute(text("TRUNCATE outbox, bench_outbox"))
        conn.execute(text("UPDATE run SET escalation_level = 0 WHERE escalation_level <> 0"))
    vacuum(world.engine, "run", "timer_fired", "outbox", "bench_timer_fired", "bench_outbox")
    checkpoint(world.engine)


def fired_rows(engine: Engine, table: str = "timer_fired") -> int:
    """Rows of `table` (the fired timers by default, including the past's)."""
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

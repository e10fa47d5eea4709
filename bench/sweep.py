"""One `deadline_sweep` over 100,000 and 1,000,000 runs: does its time follow the runs due?

Data (not timed), on a fresh PostgreSQL database `bench_sweep`, all by COPY: 1 bureau →
hospitals → general branches → N branches (党支部, `bench.common.build_tree`), one campaign of
`chuangxian_zhengyou` over them (template version frozen with `freeze_template`, the campaign row
built as `launch_campaign` builds it) and one run per branch, in the template's first five
stages, deadlines spread over six months from 30 days after `as_of`, and one fired timer of the
past per run in `timer_fired` (a reminder of the first stage), so that the sweep's NOT EXISTS and
unique key meet a table as large as `run`, as in production. Then, per case, exactly D runs
(every (N/D)th id) get a deadline inside one of the sweep's windows at `as_of` (half in the
3-working-day reminder window, half in the level-1 overdue window), and the rest stay in the
future, beyond every reminder.

Per case and repeat (A B A B …), each on a fresh due set (this sweep's rows of `timer_fired` and
its scratch copy deleted, the outboxes truncated, escalation levels reset, VACUUM ANALYZE,
CHECKPOINT): ours, `workflows.jobs.sweep(engine, "deadline_sweep", as_of)` (planning plus every
window), then a second sweep right after
(nothing due); then the SQL baseline, hand-written SQL through psycopg 3 over the same windows:
per batch of 5,000 one statement (`INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING` into a
scratch copy of `timer_fired`, the outbox rows with their JSON payload built in SQL into a
scratch copy of `outbox`, the escalation level for overdue windows), one transaction per batch;
then its second sweep. Finally the Prefect flow (`workflows.flows.deadline_sweep`) under
`prefect_test_harness` (start-up not timed), paired with direct sweeps on the same data.

    .venv/bin/python -m bench.sweep                  # 10-15 minutes; updates BENCHMARKS.md
    .venv/bin/python -m bench.sweep --report-only    # re-render from bench/results/sweep.jsonl
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from bench.common import (
    TreeShape,
    build_tree,
    checkpoint,
    drop_pg,
    emit,
    fresh_pg,
    machine,
    median,
    migrated_engine,
    note,
)
from states import timers
from states.campaigns import freeze_template
from states.catalog import DONE, get_template
from states.machines import stage_label
from states.models import Campaign
from states.schedule import dump_schedule, parse_schedule
from states.timeutil import end_of_local_day, format_local, local_date
from states.workcal import load_calendar
from workflows import jobs

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
JSONL = RESULTS / "sweep.jsonl"
EXPLAIN_TXT = RESULTS / "sweep_explain.txt"
PROFILE_TXT = RESULTS / "sweep_profile.txt"
TEMPLATE = "chuangxian_zhengyou"
#: 09:00 in Asia/Shanghai on Tuesday 1 December 2026.
AS_OF = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
FUTURE_DAYS = 180
FUTURE_FROM = 30
GOAL_SECONDS = 1.0
# `python -m bench` keeps blocks between `<!-- bench.X: start -->` and `<!-- bench.X: end -->`;
# the inner pair is the one this section is looked up by.
SECTION_START = "<!-- bench.sweep: start -->\n<!-- sweep:begin -->"
SECTION_END = "<!-- sweep:end -->\n<!-- bench.sweep: end -->"
TIMER_COLUMNS = ("id", *timers._TIMER_COLUMNS)
RUN_COLUMNS = (
    "id",
    "campaign_id",
    "org_id",
    "stage",
    "entered_at",
    "deadline",
    "version",
    "pending_request_id",
    "escalation_level",
    "completed_at",
)


# --- data ------------------------------------------------------------------------------------


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


def _copy(
    engine: Engine, table: str, columns: Sequence[str], rows: Iterator[Sequence[Any]]
) -> None:
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        with pg.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        raw.commit()
    finally:
        raw.close()


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

    _copy(engine, "run", RUN_COLUMNS, rows())
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

    _copy(engine, "timer_fired", TIMER_COLUMNS, history())
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


# --- ours ------------------------------------------------------------------------------------


def _bucket(statement: str) -> str:
    s = " ".join(statement.split())[:400]
    if s.startswith("INSERT INTO timer_fired") or (
        s.startswith("WITH") and "INSERT INTO timer_fired" in s
    ):
        return "INSERT timer_fired … SELECT run (due rows)"
    if s.startswith("INSERT INTO outbox"):
        return "INSERT outbox (payloads)"
    if s.startswith("UPDATE run"):
        return "UPDATE run escalation_level"
    if "FROM run JOIN organisation" in s:
        return "SELECT run ⋈ organisation (details)"
    if "template_version" in s:
        return "SELECT campaign ⋈ template_version"
    if "calendar_override" in s:
        return "SELECT calendar_override"
    return "other statements"


class StatementClock:
    """Time spent inside cursor.execute on `engine`, by kind of statement; keeps one example."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.examples: dict[str, tuple[str, Any]] = {}  # the slowest call of each kind
        self._slowest: dict[str, float] = defaultdict(float)
        self._t: list[float] = []

    def _before(self, *args: Any) -> None:
        self._t.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        dt = time.perf_counter() - self._t.pop()
        b = _bucket(statement)
        self.seconds[b] += dt
        self.calls[b] += 1
        if dt > self._slowest[b]:
            self._slowest[b] = dt
            self.examples[b] = (statement, params)

    def __enter__(self) -> StatementClock:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def ours(world: World, clock: StatementClock | None = None) -> tuple[float, int, float]:
    """One full sweep; return (seconds, fired, seconds of planning)."""
    t0 = time.perf_counter()
    with Session(world.engine) as s:
        timers.plan_deadlines(s, world.as_of)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    return time.perf_counter() - t0, report.total, plan_s


# --- the SQL baseline ------------------------------------------------------------------------

BASELINE_BATCH = """
WITH due AS (
  SELECT r.id, r.stage, r.deadline, r.campaign_id, r.org_id
  FROM run r
  WHERE r.campaign_id = ANY(%(cids)s::int[]) AND r.deadline <= %(upto)s::timestamptz
    AND (%(after)s::timestamptz IS NULL OR r.deadline > %(after)s::timestamptz)
    AND r.stage <> 'done' AND r.pending_request_id IS NULL
    AND (SELECT 1 FROM bench_timer_fired t
         WHERE t.run_id = r.id AND t.stage = r.stage AND t.kind = %(kind)s::text
           AND t.level = %(level)s::int AND t.due = r.deadline AND t.ref = '' LIMIT 1) IS NULL
  ORDER BY r.id + 0 LIMIT %(limit)s::int
), ins AS (
  INSERT INTO bench_timer_fired (run_id, stage, kind, level, due, ref, campaign_id, as_of,
                                 fired_at)
  SELECT id, stage, %(kind)s::text, %(level)s::int, deadline, '', campaign_id, %(as_of)s::timestamptz, now() FROM due
  ON CONFLICT DO NOTHING
  RETURNING run_id, stage, due, campaign_id
), ob AS (
  INSERT INTO bench_outbox (dedupe_key, event_kind, run_id, org_id, payload, status, attempts,
                            next_attempt_at, created_at)
  SELECT %(kind)s::text || ':' || i.run_id || ':' || i.stage || ':' || %(level)s::int || ':'
           || extract(epoch FROM i.due)::bigint,
         %(kind)s::text, i.run_id, o.id,
         json_build_object(
           'run_id', i.run_id, 'campaign_id', i.campaign_id, 'campaign', c.name,
           'org_code', o.code, 'org_name', o.name, 'stage', %(labels)s::jsonb ->> i.stage,
           'level', %(level)s::int,
           'deadline', to_char(i.due AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI'),
           %(days_key)s::text,
           (%(days)s::jsonb ->> to_char(i.due AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD'))::int),
         'pending', 0, now(), now()
  FROM ins i JOIN due d ON d.id = i.run_id
  JOIN organisation o ON o.id = d.org_id JOIN campaign c ON c.id = i.campaign_id
  RETURNING 1
), esc AS (
  UPDATE run SET escalation_level = %(level)s::int FROM ins
  WHERE %(overdue)s::boolean AND run.id = ins.run_id AND run.escalation_level < %(level)s::int
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM ob), (SELECT count(*) FROM esc)
"""


def conninfo(engine: Engine) -> str:
    u = make_url(engine.url)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"


def baseline(world: World, windows: Sequence[timers.Window], limit: int = timers.BATCH) -> int:
    """Fire every window with hand-written SQL, one statement and transaction per batch."""
    tpl = get_template(TEMPLATE)
    labels = {s: stage_label(tpl, s) for s in tpl.stage_ids}
    today = local_date(world.as_of)
    with Session(world.engine) as s:
        cal = load_calendar(s)
    fired = 0
    with psycopg.connect(conninfo(world.engine)) as pg:
        for w in windows:
            if w.kind not in (timers.REMINDER, timers.OVERDUE):
                continue
            days: dict[str, int] = {}
            wanted = world.reminder_due if w.kind == timers.REMINDER else world.overdue_due
            for d in wanted:
                day = local_date(d)
                days[str(day)] = (
                    cal.working_days_between(today, day)
                    if w.kind == timers.REMINDER
                    else (today - day).days
                )
            params = {
                "cids": list(w.campaign_ids),
                "upto": w.upto,
                "after": w.after,
                "kind": w.kind,
                "level": w.level,
                "limit": limit,
                "as_of": world.as_of,
                "labels": Jsonb(labels),
                "days": Jsonb(days),
                "days_key": "days_left" if w.kind == timers.REMINDER else "days_overdue",
                "overdue": w.kind == timers.OVERDUE,
            }
            while True:
                row = pg.execute(BASELINE_BATCH, params).fetchone()
                pg.commit()
                assert row is not None
                fired += int(row[0])
                if row[0] < limit:
                    break
    return fired


# --- EXPLAIN and profile ---------------------------------------------------------------------


def explain(world: World, clock: StatementClock, title: str, out: list[str]) -> None:
    """EXPLAIN ANALYZE the captured statements (in a transaction rolled back afterwards)."""
    raw = world.engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        for bucket in (
            "INSERT timer_fired … SELECT run (due rows)",
            "SELECT run ⋈ organisation (details)",
            "UPDATE run escalation_level",
        ):
            if bucket not in clock.examples:
                continue
            stmt, params = clock.examples[bucket]
            with pg.cursor() as cur:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + stmt, params)
                plan = [r[0] for r in cur.fetchall()]
            pg.rollback()
            short = [x if len(x) < 400 else x[:400] + " …" for x in [stmt, *plan]]
            out += [f"== {title}: {bucket}", *short, ""]
    finally:
        raw.close()


def profile_sweep(world: World) -> list[str]:
    """cProfile of one sweep: the top functions by cumulative and by own time."""
    prof = cProfile.Profile()
    prof.enable()
    jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    return buf.getvalue().splitlines()


# --- the cases -------------------------------------------------------------------------------


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


def analysis(world: World, records: list[dict[str, Any]]) -> None:
    """EXPLAIN ANALYZE of the hot statements and a cProfile of one sweep (on the current case)."""
    reset(world)
    lines: list[str] = []
    with StatementClock(world.engine) as clock:
        jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    reset(world)
    explain(world, clock, f"{world.total:,} runs, {world.due:,} due, first batch", lines)
    jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    explain(world, clock, f"{world.total:,} runs, after the sweep (nothing due)", lines)
    EXPLAIN_TXT.write_text("\n".join(lines))
    reset(world)
    prof = profile_sweep(world)
    PROFILE_TXT.write_text("\n".join(prof))
    note(f"wrote {EXPLAIN_TXT} and {PROFILE_TXT}")


def explain_big(world: World, due: int) -> None:
    """EXPLAIN ANALYZE the slowest INSERT … SELECT of a sweep that finds nothing, at `due`."""
    set_due(world, due)
    jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    with StatementClock(world.engine) as clock:
        jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    clock.examples = {k: v for k, v in clock.examples.items() if k.startswith("INSERT timer_fired")}
    lines: list[str] = []
    explain(
        world, clock, f"{world.total:,} runs, {due:,} due, after the sweep (nothing due)", lines
    )
    with EXPLAIN_TXT.open("a") as fh:
        fh.write("\n\n" + "\n".join(lines))


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


# --- BENCHMARKS.md ---------------------------------------------------------------------------


def _s(x: float) -> str:
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def render(records: list[dict[str, Any]]) -> str:
    meta = next(r for r in reversed(records) if r.get("meta"))
    runs = [r for r in records if r.get("bench") == "sweep"]
    flows_ = [r for r in records if r.get("bench") == "sweep_prefect"]
    m = meta["machine"]
    by_case: dict[tuple[int, int], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_case[(r["total"], r["due"])].append(r)
    out = [
        SECTION_START,
        "## Deadline sweep: time against runs due and runs in total",
        "",
        f"Generated by `bench/sweep.py` on {meta['date']} (wall time of the whole run: "
        f"{meta['wall_seconds'] / 60:.1f} min). Command, from the repository root:",
        "",
        f"    {meta['command']}",
        "",
        f"Machine: `nproc` = {m.get('nproc')} ({m.get('cpu', '?')}), {m.get('mem_gib')} GiB; "
        f"Python {m.get('python')}; PostgreSQL {m.get('postgresql')} on 127.0.0.1, default "
        f"settings (shared_buffers={m.get('pg_shared_buffers')}, fsync={m.get('pg_fsync')}, "
        f"synchronous_commit={m.get('pg_synchronous_commit')}). The benchmark, PostgreSQL and "
        "whatever else runs share the 2 cores; **compare only figures of one invocation** (the "
        "machine drifts 10–20 % between runs), hence the ratio to the SQL baseline.",
        "",
        "**Data** (COPY, not timed; see the module's docstring): one campaign of "
        "`chuangxian_zhengyou` over N branches (root → hospitals → general branches → branches, "
        "valid paths), one run per branch, one fired timer of the past per run in `timer_fired` "
        "(and in the baseline's copy), future deadlines spread over 180 days starting 30 "
        f"days after `as_of` = {format_local(AS_OF)} (Asia/Shanghai, a Tuesday). Per case, "
        "exactly D runs (every N/D-th id) are due: half in the reminder window 3 working days "
        "ahead, half in the level-1 overdue window (their escalation level is raised too). "
        "Load: "
        + "; ".join(
            f"{int(k):,} runs: tree {v['tree']:.0f} s, runs {v['runs']:.0f} s"
            for k, v in meta["load_seconds"].items()
        )
        + ".",
        "",
        f'**Timed**: one `workflows.jobs.sweep(engine, "deadline_sweep", as_of)` — planning '
        f"plus every window, batches of {meta['batch']:,} runs, one transaction each — then a "
        "second sweep at once (nothing due: the cost of finding nothing). **SQL baseline**: the "
        "same windows fired by one hand-written statement per batch through psycopg 3 "
        "(`INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING` into a scratch copy of "
        "`timer_fired` with the same keys, the outbox rows with their JSON payload built in SQL "
        "into a scratch copy of `outbox`, the escalation level in the same statement), no ORM, "
        "windows taken from our planner (planning alone costs ~4 ms, below). Ours builds the "
        "same statement through SQLAlchemy (data-modifying CTEs, the payload with "
        "`json_build_object`); both check 'not fired yet' with a correlated "
        "`(SELECT 1 … LIMIT 1) IS NULL` (one probe of the unique index per candidate, never a "
        "hash anti join over all of `timer_fired`) and order by `id + 0` (a top-N sort of "
        "the window's rows, never a walk of `run_pkey` in id order). Each of "
        f"{meta['repeats']} repeats per case runs on a fresh due set (fired rows and outbox "
        "deleted, escalation levels reset, VACUUM ANALYZE, CHECKPOINT), ours then SQL; "
        "medians, with min–max.",
        "",
        "| runs | due | ours: sweep s (median) | min–max | fired | µs per due run "
        "| 2nd sweep s | SQL s | SQL 2nd s | ours ÷ SQL |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    meds: dict[tuple[int, int], float] = {}
    for (total, due), rs in sorted(by_case.items()):
        secs = [r["seconds"] for r in rs]
        sql = [r["sql_seconds"] for r in rs]
        ratios = [r["seconds"] / r["sql_seconds"] for r in rs]
        meds[(total, due)] = median(secs)
        out.append(
            f"| {total:,} | {due:,} | **{_s(median(secs))}** | {_s(min(secs))}–{_s(max(secs))} "
            f"| {rs[0]['fired']:,} | {1e6 * median(secs) / due:,.0f} "
            f"| {_s(median([r['second_seconds'] for r in rs]))} | {_s(median(sql))} "
            f"| {_s(median([r['sql_second_seconds'] for r in rs]))} "
            f"| {statistics.median(ratios):.1f}× |"
        )
    out.append("")
    goal = meds.get((1_000_000, 10_000))
    if goal is not None:
        verdict = "reached" if goal <= GOAL_SECONDS else "not reached"
        out.append(
            f"**Goal ≤ {GOAL_SECONDS:.0f} s for 10,000 due among 1,000,000: {verdict}** "
            f"(median {goal:.3f} s)."
        )
    growth = []
    if (100_000, 10_000) in meds and goal is not None:
        growth.append(f"100k → 1M runs at 10,000 due: ×{goal / meds[(100_000, 10_000)]:.2f}")
    for lo, hi in ((1_000, 10_000), (10_000, 100_000)):
        if (1_000_000, lo) in meds and (1_000_000, hi) in meds:
            growth.append(
                f"{lo:,} → {hi:,} due among 1M: ×{meds[(1_000_000, hi)] / meds[(1_000_000, lo)]:.1f}"
            )
    if growth:
        out.append("Growth: " + "; ".join(growth) + ".")
    for (total, due), rs in sorted(by_case.items()):
        ours2 = median([r["second_seconds"] for r in rs])
        sql2 = median([r["sql_second_seconds"] for r in rs])
        if ours2 > 10 * sql2 and ours2 > 1.0:
            out.append(
                f"Finding nothing at {total:,} runs / {due:,} due takes {_s(ours2)} s against the "
                f"SQL's {_s(sql2)} s, more than the sweep that fired them: with many rows in a "
                "window the INSERT … SELECT is planned differently (last plan below)."
            )
    out += [
        "",
        "**Where ours spends its time** (median over repeats; time inside `cursor.execute` by "
        "statement, measured client-side with SQLAlchemy events; the rest is Python — building "
        "payloads, ORM compilation, parsing templates — plus commits and pool checkouts):",
        "",
    ]
    buckets = sorted({b for r in runs for b in r["statements"]})
    cases = sorted(by_case)
    out.append("| part | " + " | ".join(f"{t:,} / {d:,}" for t, d in cases) + " |")
    out.append("|---|" + "---:|" * len(cases))
    for b in buckets:
        cells = []
        for c in cases:
            cells.append(_s(median([r["statements"].get(b, 0.0) for r in by_case[c]])))
        out.append(f"| {b} | " + " | ".join(cells) + " |")
    rest = []
    for c in cases:
        rest.append(_s(median([r["seconds"] - sum(r["statements"].values()) for r in by_case[c]])))
    out.append("| rest (Python, commits, checkouts) | " + " | ".join(rest) + " |")
    out.append(
        "| planning alone (`plan_deadlines`) | "
        + " | ".join(_s(median([r["plan_seconds"] for r in by_case[c]])) for c in cases)
        + " |"
    )
    if flows_:
        fl = [r["flow_seconds"] for r in flows_]
        di = [r["direct_seconds"] for r in flows_]
        f0 = flows_[0]
        out += [
            "",
            f"**Through Prefect** ({f0['total']:,} runs, {f0['due']:,} due): "
            "`workflows.flows.deadline_sweep(as_of=…)` under `prefect_test_harness()` (its "
            f"start-up, {f0['harness_startup_seconds']:.0f} s, not timed; one warm-up flow run "
            f"first), paired with direct `jobs.sweep` calls: flow {_s(median(fl))} s "
            f"({_s(min(fl))}–{_s(max(fl))}) against direct {_s(median(di))} s: orchestration "
            f"adds {_s(median(fl) - median(di))} s (one flow run, a plan task, one task run "
            "per window).",
        ]
    out += _plans()
    out += [
        "",
        "Raw JSON lines: `bench/results/sweep.jsonl`; EXPLAIN (ANALYZE, BUFFERS) of the hot "
        "statements: `bench/results/sweep_explain.txt`; a cProfile of one sweep: "
        "`bench/results/sweep_profile.txt`. The run creates and drops the database "
        "`bench_sweep` (`--keep` keeps it).",
        SECTION_END,
    ]
    return "\n".join(out)


def _plans() -> list[str]:
    """The plan nodes of this run's EXPLAIN ANALYZE (statements and details in the file)."""
    if not EXPLAIN_TXT.exists():
        return []
    out = [
        "",
        "**Plans** of the slowest call of each hot statement (EXPLAIN (ANALYZE, BUFFERS), rolled "
        "back; plan nodes only, trimmed):",
        "",
        "```",
    ]
    for line in EXPLAIN_TXT.read_text().splitlines():
        if line.startswith("== "):
            out.append(line[3:])
        elif "->" in line or line.startswith(("Insert", "Update", "Hash", "Limit", "Nested")):
            out.append(line[:150].rstrip())
        elif line.startswith("Execution Time"):
            out += [line, ""]
    out.append("```")
    return out


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of `path` (between its markers), or append it."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION_START in current and SECTION_END in current:
        head, rest = current.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        new = head + section + ("\n\n" + tail if tail else "\n")
    else:
        new = current.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(new)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--cases",
        default="1e5:1e4,1e6:1e3,1e6:1e4,1e6:1e5",
        help="comma-separated total:due pairs",
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--slow", type=float, default=60.0, help="no more repeats after one longer than this (s)"
    )
    ap.add_argument("--analyse-due", type=int, default=10_000, help="case of EXPLAIN/profile")
    ap.add_argument("--skip-prefect", action="store_true")
    ap.add_argument("--db", default="bench_sweep")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--jsonl", default=str(JSONL), help="results file (JSON lines)")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"))
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--report-only", action="store_true", help="re-render from the last results")
    args = ap.parse_args(argv)
    if not args.report_only:
        run_bench(args)
    if not args.no_write:
        lines = Path(args.jsonl).read_text().splitlines()
        records = [json.loads(x) for x in lines if x.startswith("{")]
        write_section(Path(args.out), render(records))
        note(f"updated {args.out}")


if __name__ == "__main__":
    main()

"""The SQL baseline: the same windows fired by one hand-written statement per batch through psycopg 3."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from bench.sweep.constants import TEMPLATE
from bench.sweep.data import World
from states import timers
from states.catalog import get_template
from states.machines import stage_label
from states.timeutil import local_date
from states.workcal import load_calendar

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

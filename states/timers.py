"""Timed work over every run at once: reminders, the overdue ladder, approval SLAs, phase openings.

Planning turns a moment (`as_of`) into a few *windows*: for each group of campaigns sharing a
rule, the range of deadlines (or, for approvals, of waiting-since instants) for which one notice
is due now. Firing a window is one statement, `INSERT INTO timer_fired … SELECT … ON CONFLICT DO
NOTHING RETURNING`, over a batch of due runs; the unique key of `timer_fired` (run, stage, kind,
level, due, ref) makes each notice fire at most once, ever, however many sweeps run at once, are
retried or die half-way. The outbox rows for exactly the rows that statement inserted are written
in the same transaction, so a notice and its record commit together or not at all. The work
therefore follows the number of runs due, not the number of runs (index range on
`run.deadline`).

Windows are half-open ranges that never overlap, so a run is in at most one window of a ladder at
any moment: a sweep that missed a day fires the notice due now, not every notice it missed (the
reminder three days ahead is not sent when one day is left; an escalation that has climbed to
level 3 is sent once, at level 3, whose audience includes the lower levels').

The ladder (`escalation` in a template, in working days unless it says otherwise):
level 1 the day after the deadline (the branch and its parent committee); level 2 `level2_after`
working days after level 1 (the grandparent too); level 3 `level3_after` working days after
level 2 (the campaign's launching organisation too). Approval SLAs: level 1 when a request has
waited `sla_working_days` working days at its current step (its approver), level 2 at twice that
(the approver's parent).

A dated phase (四强四有) closes on its stage's deadline, which the overdue ladder chases; on the
day a phase opens, every run that has not yet finished it is told so (`phase_opened`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    String,
    cast,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from states.catalog import DONE, Template, from_definition
from states.models import (
    Campaign,
    Decision,
    Request,
    RequestStatus,
    Run,
    TemplateVersion,
    TimerFired,
)
from states.owners import open_above, owned_stages
from states.timer_notices import (
    APPROVAL_SLA,
    EVENT_OF,
    OVERDUE,
    PHASE_OPEN,
    REMINDER,
    Fired,
    Window,
    enqueue,
    fire_in_one_statement,
    month_day,
    outbox_rows,
)
from states.timeutil import ONE_DAY, UTCDateTime, end_of_local_day, local_date, utcnow
from states.workcal import WorkCalendar, coverage_message, load_calendar, uncovered_years

__all__ = [
    "APPROVAL_SLA",
    "BATCH",
    "EVENT_OF",
    "OVERDUE",
    "PHASE_OPEN",
    "REMINDER",
    "Fired",
    "Plan",
    "Window",
    "fire",
    "fire_all",
    "outbox_rows",
    "plan_approvals",
    "plan_deadlines",
]

logger = logging.getLogger(__name__)

#: Runs fired per statement (and per transaction).
BATCH = 5000
#: How far back a ladder date is searched (a level can't be further than this from today).
_LOOKBACK = 800


@dataclass
class Plan:
    """What one sweep at `as_of` has to fire, and the calendar warnings met while planning."""

    as_of: datetime
    windows: list[Window] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Campaigns:
    """The active campaigns and their templates (a sweep handles a handful of campaigns)."""

    templates: dict[int, Template]  # campaign id → template
    years: dict[int, int]  # campaign id → year of its launch (for dated phases)


def _active_campaigns(session: Session) -> _Campaigns:
    rows = session.execute(
        select(
            col(Campaign.id),
            col(Campaign.launched_at),
            col(TemplateVersion.definition),
        )
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(col(Campaign.status) == "active")
    ).all()
    templates: dict[int, Template] = {}
    years: dict[int, int] = {}
    cache: dict[str, Template] = {}
    for cid, launched_at, definition in rows:
        key = repr(sorted(definition.items()))
        tpl = cache.get(key)
        if tpl is None:
            tpl = cache[key] = from_definition(definition)
        templates[cid] = tpl
        years[cid] = local_date(launched_at).year
    return _Campaigns(templates, years)


def _adder(cal: WorkCalendar, working: bool) -> Callable[[date, int], date]:
    if working:
        return cal.add_working_days

    def calendar_days(day: date, n: int) -> date:
        return day + timedelta(days=n)

    return calendar_days


def _latest(today: date, reached: Callable[[date], date]) -> date:
    """The latest day `d` before today whose ladder date `reached(d)` is today or earlier."""
    d = today - ONE_DAY
    for _ in range(_LOOKBACK):
        if reached(d) <= today:
            return d
        d -= ONE_DAY
    return d


def _warn_years(plan: Plan, days: Iterable[date]) -> None:
    for year in uncovered_years(d.year for d in days):
        message = coverage_message(year)
        if message not in plan.warnings:
            plan.warnings.append(message)


def plan_deadlines(session: Session, as_of: datetime) -> Plan:
    """Windows for reminders, the overdue ladder and phase openings at `as_of`."""
    plan = Plan(as_of)
    camps = _active_campaigns(session)
    if not camps.templates:
        return plan
    cal = load_calendar(session)
    today = local_date(as_of)
    touched: set[date] = {today}

    reminders: dict[tuple[tuple[int, ...], bool], list[int]] = defaultdict(list)
    ladders: dict[tuple[int, int, bool], list[int]] = defaultdict(list)
    for cid, tpl in camps.templates.items():
        offsets = tuple(sorted({k for k in tpl.reminders.offsets if k >= 0}))
        if offsets:
            reminders[(offsets, tpl.reminders.working_days)].append(cid)
        esc = tpl.escalation
        ladders[(esc.level2_after, esc.level3_after, esc.working_days)].append(cid)

    for (offsets, working), cids in reminders.items():
        add = _adder(cal, working)
        after = as_of
        for k in offsets:
            cutoff = add(today, k) if k else today
            touched.add(cutoff)
            upto = end_of_local_day(cutoff)
            if upto > after:
                plan.windows.append(Window(REMINDER, k, tuple(sorted(cids)), upto, after))
                after = upto

    for (l2, l3, working), cids in ladders.items():
        add = _adder(cal, working)

        def level1(d: date) -> date:
            return d + ONE_DAY

        def level2(d: date, add: Any = add, l2: int = l2) -> date:
            return add(level1(d), l2)

        def level3(d: date, add: Any = add, l2: int = l2, l3: int = l3) -> date:
            return add(level2(d), l3)

        latest = [_latest(today, f) for f in (level1, level2, level3)]
        touched.update(latest)
        for level in (3, 2, 1):
            upto = end_of_local_day(latest[level - 1])
            lower = end_of_local_day(latest[level]) if level < 3 else None
            if lower is None or upto > lower:
                plan.windows.append(Window(OVERDUE, level, tuple(sorted(cids)), upto, lower))

    plan.windows = _split_by_owner(plan.windows, owned_stages(camps.templates))
    for cid, tpl in camps.templates.items():
        year = camps.years[cid]
        for index, stage in enumerate(tpl.stages):
            if stage.phase is None:
                continue
            opens = month_day(stage.phase.opens, year)
            closes = month_day(stage.phase.closes, year)
            if opens <= today <= closes:
                plan.windows.append(
                    Window(
                        PHASE_OPEN,
                        index + 1,
                        (cid,),
                        end_of_local_day(opens),
                        stage=stage.id,
                        stages=tuple(s.id for s in tpl.stages[: index + 1]),
                    )
                )
    _warn_years(plan, touched)
    return plan


def _split_by_owner(windows: list[Window], owed: dict[int, tuple[str, ...]]) -> list[Window]:
    """Split each window whose campaigns owe stages above the branch into the branch's side and
    the side owed above (whose notices go to the owing committee)."""
    out: list[Window] = []
    for w in windows:
        mine = tuple((cid, owed[cid]) for cid in w.campaign_ids if cid in owed)
        if not mine:
            out.append(w)
            continue
        out += [replace(w, owed=mine), replace(w, owed=mine, above=True)]
    return out


def plan_approvals(session: Session, as_of: datetime) -> Plan:
    """Windows for approval SLAs at `as_of` (by when a request's wait at its step began)."""
    plan = Plan(as_of)
    camps = _active_campaigns(session)
    if not camps.templates:
        return plan
    cal = load_calendar(session)
    today = local_date(as_of)
    groups: dict[int, list[int]] = defaultdict(list)
    for cid, tpl in camps.templates.items():
        groups[tpl.approval.sla_working_days].append(cid)
    touched: set[date] = {today}
    for sla, cids in groups.items():
        latest = [_latest(today, _sla_reached(cal, n * sla)) for n in (1, 2)]
        touched.update(latest)
        level2 = end_of_local_day(latest[1])
        plan.windows.append(Window(APPROVAL_SLA, 2, tuple(sorted(cids)), level2))
        level1 = end_of_local_day(latest[0])
        if level1 > level2:
            plan.windows.append(Window(APPROVAL_SLA, 1, tuple(sorted(cids)), level1, level2))
    _warn_years(plan, touched)
    return plan


def _sla_reached(cal: WorkCalendar, days: int) -> Callable[[date], date]:
    def reached(d: date) -> date:
        return cal.add_working_days(d, days)

    return reached


def _insert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return pg_insert if dialect == "postgresql" else sqlite_insert


def _not_fired(window: Window, stage: Any, due: Any, ref: Any) -> Any:
    # A correlated probe with LIMIT 1 rather than NOT EXISTS: PostgreSQL cannot turn it into an
    # anti join, so each candidate costs one look-up in uq_timer_fired; an anti join misplanned
    # on fresh, unanalysed rows read every timer ever fired, per batch (33 s at 100,000 due).
    probe = (
        select(literal(1))
        .where(
            col(TimerFired.run_id) == col(Run.id),
            col(TimerFired.stage) == stage,
            col(TimerFired.kind) == window.kind,
            col(TimerFired.level) == window.level,
            col(TimerFired.due) == due,
            col(TimerFired.ref) == ref,
        )
        .limit(1)
        .scalar_subquery()
    )
    return probe.is_(None)


_TIMER_COLUMNS = (
    "run_id",
    "stage",
    "kind",
    "level",
    "due",
    "ref",
    "campaign_id",
    "as_of",
    "fired_at",
)


def _run_select(window: Window, as_of: datetime, now: datetime, limit: int) -> Any:
    """Due runs of a deadline window (reminder, overdue or phase opening), as timer rows."""
    if window.kind == PHASE_OPEN:
        assert window.stage is not None
        stage: Any = literal(window.stage, String)
        due: Any = literal(window.upto, UTCDateTime())
        conds: list[Any] = [col(Run.stage).in_(window.stages)]
        ref: Any = literal("", String)
    else:
        stage = col(Run.stage)
        due = col(Run.deadline)
        ref = literal("", String)
        conds = [
            col(Run.deadline) <= window.upto,
            col(Run.stage) != DONE,
            col(Run.pending_request_id).is_(None),
        ]
        if window.after is not None:
            conds.append(col(Run.deadline) > window.after)
        if window.owed:
            above = open_above(dict(window.owed))
            conds.append(above if window.above else ~above)
    ts = UTCDateTime()
    return (
        select(
            col(Run.id),
            stage,
            literal(window.kind, String),
            literal(window.level),
            due,
            ref,
            col(Run.campaign_id),
            literal(as_of, ts),
            literal(now, ts),
        )
        .where(
            col(Run.campaign_id).in_(window.campaign_ids),
            *conds,
            _not_fired(window, stage, due, ref),
        )
        # `+ 0`: a top-N sort of the window's rows; never a walk of run_pkey in id order filtering
        # on the deadline, which the planner picks for large windows and which reads the table.
        .order_by(col(Run.id) + 0)
        .limit(limit)
    )


def _request_select(window: Window, as_of: datetime, now: datetime, limit: int) -> Any:
    """Pending requests whose wait at their current step began inside the window."""
    last_decision = (
        select(func.max(col(Decision.created_at)))
        .where(col(Decision.request_id) == col(Request.id))
        .correlate(Request)
        .scalar_subquery()
    )
    ts = UTCDateTime()
    waiting_since = func.coalesce(last_decision, col(Request.submitted_at))
    ref = cast(col(Request.id), String) + literal("/") + cast(col(Request.step), String)
    conds: list[Any] = [
        col(Request.status) == RequestStatus.PENDING,
        col(Request.current_approver_org_id).is_not(None),
        col(Run.campaign_id).in_(window.campaign_ids),
        waiting_since <= window.upto,
    ]
    if window.after is not None:
        conds.append(waiting_since > window.after)
    return (
        select(
            col(Run.id),
            col(Request.from_stage),
            literal(window.kind, String),
            literal(window.level),
            waiting_since,
            ref,
            col(Run.campaign_id),
            literal(as_of, ts),
            literal(now, ts),
        )
        .join(Run, col(Run.id) == col(Request.run_id))
        .where(*conds, _not_fired(window, col(Request.from_stage), waiting_since, ref))
        .order_by(col(Request.id))
        .limit(limit)
    )


def fire(session: Session, window: Window, as_of: datetime, *, limit: int = BATCH) -> int:
    """Fire up to `limit` due timers of `window`, with their notices; return how many fired.

    Commit after each call: the timer rows, the outbox rows and the escalation levels of one
    batch belong to one transaction. Call again until it returns less than `limit`.
    """
    now = utcnow()
    build = _request_select if window.kind == APPROVAL_SLA else _run_select
    source = build(window, as_of, now, limit)
    stmt = (
        _insert(session)(TimerFired)
        .from_select(list(_TIMER_COLUMNS), source)
        .on_conflict_do_nothing()
        .returning(
            col(TimerFired.run_id), col(TimerFired.stage), col(TimerFired.due), col(TimerFired.ref)
        )
    )
    one_statement = window.kind in (REMINDER, OVERDUE) and not window.above
    if one_statement and session.get_bind().dialect.name == "postgresql":
        return fire_in_one_statement(session, window, as_of, stmt, now)
    fired = [Fired(*row) for row in session.execute(stmt).all()]
    if not fired:
        return 0
    enqueue(session, window, as_of, fired)
    if window.kind == OVERDUE and not window.above:  # the branch's own ladder level
        session.execute(
            update(Run)
            .where(
                col(Run.id).in_([f.run_id for f in fired]),
                col(Run.escalation_level) < window.level,
                col(Run.deadline) <= window.upto,
                col(Run.stage) != DONE,
            )
            .values(escalation_level=window.level)
        )
    return len(fired)


def fire_all(
    session_factory: Callable[[], Any],
    windows: Sequence[Window],
    as_of: datetime,
    *,
    limit: int = BATCH,
    progress: Callable[[Window, int], None] | None = None,
) -> dict[str, int]:
    """Fire every window to exhaustion, one transaction per batch; return counts by kind.

    `session_factory()` is a context manager yielding a session that commits on exit (for
    example `functools.partial(states.db.unit_of_work, engine)`).
    """
    counts: dict[str, int] = defaultdict(int)
    for window in windows:
        while True:
            with session_factory() as session:
                n = fire(session, window, as_of, limit=limit)
            counts[window.kind] += n
            if progress is not None and n:
                progress(window, n)
            if n < limit:
                break
    return dict(counts)

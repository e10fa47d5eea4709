"""The notices of fired timers: what each timer kind sends, to whom, built in SQL or in Python.

A window's timers are due runs (or requests); firing one writes a `timer_fired` row and, in the
same transaction, its outbox row. On PostgreSQL a reminder or overdue batch of branch-owed work is
one statement with the payload built in SQL; everything else (SQLite, approval SLAs, phase
openings, and work owed above the branch, whose notice goes to the owning committee) is built here
in Python by `outbox_rows`, the reference the SQL path is tested against.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Date,
    Integer,
    String,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session, col

from states.catalog import Template, from_definition
from states.machines import stage_label
from states.models import Campaign, Organisation, OutboxMessage, Request, Run, TemplateVersion
from states.owners import owner_path, word
from states.timeutil import ONE_DAY, UTCDateTime, end_of_local_day, format_local, local_date, utcnow
from states.workcal import load_calendar

REMINDER = "reminder"
OVERDUE = "overdue"
APPROVAL_SLA = "approval_sla"
PHASE_OPEN = "phase_open"
#: The outbox event kind of each timer kind.
EVENT_OF = {
    REMINDER: "reminder",
    OVERDUE: "overdue",
    APPROVAL_SLA: "approval_sla",
    PHASE_OPEN: "phase_opened",
}


@dataclass(frozen=True)
class Window:
    """Runs of `campaign_ids` whose timer instant falls in (`after`, `upto`] fire `kind`/`level`.

    The instant is the run's deadline, except for approval SLAs (when the wait began). For
    `phase_open`, `stage` names the phase and `stages` the stages a run may still be in.
    """

    kind: str
    level: int
    campaign_ids: tuple[int, ...]
    upto: datetime
    after: datetime | None = None
    stage: str | None = None
    stages: tuple[str, ...] = ()
    #: (campaign id, stages owed above the branch) of these campaigns; `above` picks that side.
    owed: tuple[tuple[int, tuple[str, ...]], ...] = ()
    above: bool = False

    def count_key(self) -> str:
        """How reports count what this window fired (`overdue_L2`, `phase_open_L3`, …)."""
        return f"{self.kind}_L{self.level}"

    def describe(self) -> str:
        span = f"{format_local(self.after)} – {format_local(self.upto)}"
        what = f"{self.kind}:{self.stage}" if self.stage else self.kind
        what += "（上级负责的阶段）" if self.above else ""
        return f"{what} L{self.level} · {len(self.campaign_ids)} 个活动 · {span}"


@dataclass(frozen=True)
class Fired:
    run_id: int
    stage: str
    due: datetime
    ref: str


def month_day(text: str, year: int) -> date:
    month, day = (int(x) for x in text.split("-"))
    return date(year, month, day)


def fire_in_one_statement(
    session: Session, window: Window, as_of: datetime, insert_timers: Any, now: datetime
) -> int:
    """PostgreSQL: fire a reminder or overdue batch in one statement, notices built in SQL.

    `WITH fired AS (INSERT INTO timer_fired … RETURNING …), bumped AS (UPDATE run … FROM fired),
    sent AS (INSERT INTO outbox SELECT … json_build_object(…) FROM fired JOIN run …)`: no row
    crosses into Python. The payload is the one `_enqueue` builds (checked by the tests, which run
    the same sweeps on SQLite through `_enqueue`); what needs the calendar or the templates
    (working days left, stage names) comes in as small JSON maps.
    """
    today = local_date(as_of)
    fired = insert_timers.cte("fired")
    campaigns = _templates_of(session, window.campaign_ids)
    names = {
        str(cid): {stage.id: stage_label(tpl, stage.id) for stage in tpl.stages}
        for cid, (_, tpl) in campaigns.items()
    }
    local_due = func.timezone("Asia/Shanghai", fired.c.due)
    due_day = func.to_char(local_due, "YYYY-MM-DD")
    fields: list[Any] = [
        "run_id",
        fired.c.run_id,
        "campaign_id",
        col(Run.campaign_id),
        "campaign",
        col(Campaign.name),
        "org_code",
        col(Organisation.code),
        "org_name",
        col(Organisation.name),
        "stage",
        cast(literal(json.dumps(names)), JSONB)[cast(col(Run.campaign_id), String)].op("->>")(
            fired.c.stage
        ),
        "level",
        literal(window.level),
        "deadline",
        func.to_char(local_due, "YYYY-MM-DD HH24:MI"),
    ]
    if window.kind == REMINDER:
        cal = load_calendar(session)
        first = today if window.after is None else local_date(window.after)
        days = {}
        day = first
        while day <= local_date(window.upto):
            days[str(day)] = cal.working_days_between(today, day)
            day += ONE_DAY
        fields += [
            "days_left",
            cast(cast(literal(json.dumps(days)), JSONB).op("->>")(due_day), Integer),
        ]
    else:
        fields += ["days_overdue", literal(today) - cast(local_due, Date)]
    event = EVENT_OF[window.kind]
    key = func.concat(
        f"{event}:",
        fired.c.run_id,
        ":",
        fired.c.stage,
        f":{window.level}:",
        cast(func.floor(func.extract("epoch", fired.c.due)), BigInteger),
    )
    ts = UTCDateTime()
    sent = (
        insert(OutboxMessage)
        .from_select(
            [
                "dedupe_key",
                "event_kind",
                "run_id",
                "org_id",
                "payload",
                "status",
                "attempts",
                "next_attempt_at",
                "created_at",
            ],
            select(
                key,
                literal(event),
                fired.c.run_id,
                col(Run.org_id),
                func.json_build_object(*[literal(f) if isinstance(f, str) else f for f in fields]),
                literal("pending"),
                literal(0),
                literal(now, ts),
                literal(now, ts),
            )
            .select_from(fired)
            .join(Run, col(Run.id) == fired.c.run_id)
            .join(Organisation, col(Organisation.id) == col(Run.org_id))
            .join(Campaign, col(Campaign.id) == col(Run.campaign_id)),
        )
        .returning(col(OutboxMessage.id))
        .cte("sent")
    )
    stmt = select(func.count()).select_from(sent)
    if window.kind == OVERDUE:
        bumped = (
            update(Run)
            .where(col(Run.id) == fired.c.run_id, col(Run.escalation_level) < window.level)
            .values(escalation_level=window.level)
            .cte("bumped")
        )
        stmt = stmt.add_cte(bumped)
    return int(session.execute(stmt).scalar_one())


def _templates_of(session: Session, campaign_ids: Iterable[int]) -> dict[int, tuple[str, Template]]:
    rows = session.execute(
        select(col(Campaign.id), col(Campaign.name), col(TemplateVersion.definition))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(col(Campaign.id).in_(sorted(set(campaign_ids))))
    ).all()
    return {cid: (name, from_definition(definition)) for cid, name, definition in rows}


def enqueue(session: Session, window: Window, as_of: datetime, fired: Sequence[Fired]) -> None:
    """Write the notices of the timers just fired, one outbox row each, in one statement."""
    session.execute(insert(OutboxMessage), outbox_rows(session, window, as_of, fired))


def outbox_rows(
    session: Session, window: Window, as_of: datetime, fired: Sequence[Fired]
) -> list[dict[str, Any]]:
    """The outbox rows (notices) of timers just fired."""
    details = {
        run_id: (org_id, code, name, campaign_id)
        for run_id, org_id, code, name, campaign_id in session.execute(
            select(
                col(Run.id),
                col(Run.org_id),
                col(Organisation.code),
                col(Organisation.name),
                col(Run.campaign_id),
            )
            .join(Organisation, col(Organisation.id) == col(Run.org_id))
            .where(col(Run.id).in_([f.run_id for f in fired]))
        ).all()
    }
    campaigns = _templates_of(session, (d[3] for d in details.values()))
    today = local_date(as_of)
    cal = load_calendar(session)
    approvers: dict[int, tuple[int, str]] = {}
    if window.kind == APPROVAL_SLA:
        request_ids = [int(f.ref.split("/")[0]) for f in fired]
        approvers = {
            rid: (org_id, name)
            for rid, org_id, name in session.execute(
                select(col(Request.id), col(Organisation.id), col(Organisation.name))
                .join(Organisation, col(Organisation.id) == col(Request.current_approver_org_id))
                .where(col(Request.id).in_(request_ids))
            ).all()
        }
    owners = _owners(session, fired, campaigns) if window.above else {}
    days_left: dict[date, int] = {}
    rows: list[dict[str, Any]] = []
    event = EVENT_OF[window.kind]
    for f in fired:
        org_id, code, name, campaign_id = details[f.run_id]
        campaign_name, tpl = campaigns[campaign_id]
        payload: dict[str, Any] = {
            "run_id": f.run_id,
            "campaign_id": campaign_id,
            "campaign": campaign_name,
            "org_code": code,
            "org_name": name,
            "stage": stage_label(tpl, f.stage) if f.stage in tpl.stage_ids else f.stage,
            "level": window.level,
        }
        target = org_id
        if window.above:  # the owing committee is told, in its own words
            target, owner_name = owners[f.run_id]
            payload.update(owed=True, owner_name=owner_name, owed_word=word(tpl, f.stage))
        due_day = local_date(f.due)
        key = f"{event}:{f.run_id}:{f.stage}:{window.level}:{int(f.due.timestamp())}"
        if window.kind == REMINDER:
            if due_day not in days_left:
                days_left[due_day] = (
                    cal.working_days_between(today, due_day)
                    if tpl.reminders.working_days
                    else (due_day - today).days
                )
            payload.update(deadline=format_local(f.due), days_left=days_left[due_day])
        elif window.kind == OVERDUE:
            payload.update(deadline=format_local(f.due), days_overdue=(today - due_day).days)
        elif window.kind == PHASE_OPEN:
            phase = tpl.stage(f.stage).phase
            assert phase is not None
            closes = month_day(phase.closes, due_day.year)
            payload.update(deadline=format_local(end_of_local_day(closes)), opens=str(due_day))
        else:
            request_id = int(f.ref.split("/")[0])
            target, approver_name = approvers[request_id]
            key = f"{event}:{f.ref}:{window.level}:{int(f.due.timestamp())}"
            payload.update(
                request_id=request_id,
                approver_name=approver_name,
                waiting_days=cal.working_days_between(due_day, today),
            )
        rows.append(
            {
                "dedupe_key": key,
                "event_kind": event,
                "run_id": f.run_id,
                "org_id": target,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": utcnow(),
                "created_at": utcnow(),
            }
        )
    return rows


def _owners(
    session: Session, fired: Sequence[Fired], campaigns: dict[int, tuple[str, Template]]
) -> dict[int, tuple[int, str]]:
    """{run id: (id, name) of the organisation owing the fired stage} (two queries)."""
    root = Organisation.__table__.alias("root")  # type: ignore[attr-defined]
    rows = session.execute(
        select(col(Run.id), col(Run.campaign_id), col(Organisation.path), root.c.path)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(root, root.c.id == col(Campaign.root_org_id))
        .where(col(Run.id).in_([f.run_id for f in fired]))
    ).all()
    stage_of = {f.run_id: f.stage for f in fired}
    paths = {
        run_id: owner_path(campaigns[cid][1], stage_of[run_id], path, root_path) or root_path
        for run_id, cid, path, root_path in rows
    }
    orgs = {
        p: (i, n)
        for i, p, n in session.execute(
            select(col(Organisation.id), col(Organisation.path), col(Organisation.name)).where(
                col(Organisation.path).in_(sorted(set(paths.values())))
            )
        ).all()
    }
    return {run_id: orgs[p] for run_id, p in paths.items()}

"""Personal deadline feeds: the feed's address, and the deadlines it lists.

Each user has at most one feed row; its nonce is the secret part of the address
(`/calendar/<token>.ics`, a `states.public_links` token of kind "calendar"). Replacing the
nonce revokes the old address at once. The deadlines are read with a few set-based queries,
bounded in time (`PAST_DAYS` back, `AHEAD_DAYS` ahead) and in number (`MAX_EVENTS`):

* every unfinished run in the user's reach whose current stage has a deadline;
* every request waiting on an organisation where the user approves, due at its SLA
  (`sla_working_days` working days after its wait at the current step began);
* every open finding (督导意见) on an organisation in reach, due at its date.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import Subquery, and_, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from states.calfeed.models import CalendarFeed
from states.campaigns import campaign_template, template_by_digest
from states.catalog import DONE, Template
from states.models import (
    Campaign,
    Decision,
    Organisation,
    Request,
    RequestKind,
    RequestStatus,
    Run,
    TemplateVersion,
)
from states.public_links import Kind, new_nonce, nonce_of, token_for
from states.queries import InboxRow, approval_inbox
from states.supervision.models import Finding
from states.timeutil import end_of_local_day, local_date, utcnow
from states.users import Actor
from states.workcal import cached_calendar

KIND: Kind = "calendar"
PAST_DAYS = 60
AHEAD_DAYS = 400
MAX_EVENTS = 500
MAX_APPROVALS = 200


# --------------------------------------------------------------------------- the address


def feed_token(session: Session, user_id: int) -> str:
    """The user's feed token, creating the feed on first use."""
    feed = session.get(CalendarFeed, user_id)
    if feed is None:
        try:
            with session.begin_nested():  # two first visits at once: the other one's row wins
                feed = CalendarFeed(user_id=user_id, nonce=new_nonce())
                session.add(feed)
        except IntegrityError:
            feed = session.get(CalendarFeed, user_id, populate_existing=True)
            assert feed is not None
    return token_for(KIND, feed.nonce)


def reset_feed(session: Session, user_id: int) -> str:
    """Give the user a new feed address (the old one stops working); return its token."""
    feed = session.get(CalendarFeed, user_id)
    if feed is None:
        return feed_token(session, user_id)
    feed.nonce = new_nonce()
    feed.created_at = utcnow()
    session.add(feed)
    session.flush()
    return token_for(KIND, feed.nonce)


def feed_owner(session: Session, token: str) -> int | None:
    """The user whose current feed `token` opens, or None (forged, truncated or revoked)."""
    nonce = nonce_of(KIND, token)
    if nonce is None:
        return None
    row = session.execute(
        select(CalendarFeed.user_id).where(col(CalendarFeed.nonce) == nonce)
    ).first()
    return int(row[0]) if row else None


# --------------------------------------------------------------------------- the deadlines


@dataclass(frozen=True)
class Deadline:
    """One dated item of a feed; `uid` stays the same while the item's date moves."""

    uid: str
    title: str
    due: datetime
    path: str
    detail: str
    sequence: int
    modified: datetime


def deadlines(session: Session, actor: Actor, now: datetime | None = None) -> list[Deadline]:
    """Every deadline of the feed of `actor`, soonest first (bounded, see the module)."""
    now = now or utcnow()
    since, until = now - timedelta(days=PAST_DAYS), now + timedelta(days=AHEAD_DAYS)
    items = [
        *_stage_deadlines(session, actor, since, until),
        *_approval_deadlines(session, actor, since, until),
        *_finding_deadlines(session, actor, since, until),
    ]
    items.sort(key=lambda d: (d.due, d.uid))
    return items[:MAX_EVENTS]


def _last_extension() -> Subquery:
    """Per run and stage: when its latest extension was granted (a grouped subquery)."""
    return (
        select(
            col(Request.run_id).label("run_id"),
            col(Request.from_stage).label("stage"),
            func.max(col(Request.decided_at)).label("granted_at"),
        )
        .where(
            col(Request.kind) == RequestKind.EXTENSION,
            col(Request.status) == RequestStatus.APPROVED,
        )
        .group_by(col(Request.run_id), col(Request.from_stage))
        .subquery()
    )


#: The columns a stage deadline needs (plain rows, no ORM objects: a feed may list hundreds).
_STAGE_COLUMNS = (
    col(Run.id),
    col(Run.stage),
    col(Run.deadline),
    col(Run.version),
    col(Run.entered_at),
    col(Organisation.name),
    col(Campaign.name),
    col(Campaign.template_version_id),
    col(TemplateVersion.digest),
)


def _stage_deadlines(
    session: Session, actor: Actor, since: datetime, until: datetime
) -> list[Deadline]:
    ext = _last_extension()
    rows = session.execute(
        select(*_STAGE_COLUMNS, ext.c.granted_at)  # type: ignore[call-overload]
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .outerjoin(ext, and_(ext.c.run_id == col(Run.id), ext.c.stage == col(Run.stage)))
        .where(
            actor.reach_filter(),
            col(Run.completed_at).is_(None),
            col(Run.stage) != DONE,
            col(Run.deadline).is_not(None),
            col(Run.deadline) >= since,
            col(Run.deadline) <= until,
        )
        .order_by(col(Run.deadline), col(Run.id))
        .limit(MAX_EVENTS)
    ).all()
    return [_stage_item(session, row) for row in rows]


def _stage_item(session: Session, row: Any) -> Deadline:
    run_id, stage_id, deadline, version, entered, org_name, campaign, version_id, digest, ext = row
    stage = template_by_digest(session, version_id, digest).stage_name(stage_id)
    changed = max(entered, _aware(ext) or entered)
    return Deadline(
        uid=f"run-{run_id}-{stage_id}",
        title=f"{org_name}：{stage}截止",
        due=deadline,
        path=f"/runs/{run_id}",
        detail=f"{campaign} · {stage}",
        sequence=version,
        modified=changed,
    )


def _aware(value: datetime | None) -> datetime | None:
    """SQLite hands back a subquery's max() without the column type: read it as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _approval_deadlines(
    session: Session, actor: Actor, since: datetime, until: datetime
) -> list[Deadline]:
    rows, _total = approval_inbox(session, actor, limit=MAX_APPROVALS)
    if not rows:
        return []
    waits = _waiting_since(session, [r.request.id or 0 for r in rows])
    cal = cached_calendar(session)
    campaigns = {r.campaign.id: r.campaign for r in rows}
    templates = {cid: campaign_template(session, c) for cid, c in campaigns.items()}
    items = [
        _approval_item(row, templates[row.campaign.id], waits, cal.add_working_days) for row in rows
    ]
    return [i for i in items if since <= i.due <= until]


def _approval_item(
    row: InboxRow,
    tpl: Template,
    waits: dict[int, datetime],
    add_working_days: Callable[[date, int], date],
) -> Deadline:
    """A pending request, due `sla_working_days` working days after its wait began."""
    req = row.request
    since_wait = waits.get(req.id or 0) or req.submitted_at
    days = tpl.approval.sla_working_days
    what = "延期申请" if req.kind == RequestKind.EXTENSION else "推进申请"
    return Deadline(
        uid=f"request-{req.id}-{req.step}",
        title=f"待审批：{row.org.name}{what}",
        due=end_of_local_day(add_working_days(local_date(since_wait), days)),
        path=f"/runs/{row.run.id}",
        detail=f"{row.campaign.name} · {tpl.stage_name(req.from_stage)} · 审批时限 {days} 个工作日",
        sequence=req.step,
        modified=since_wait,
    )


def _waiting_since(session: Session, request_ids: Iterable[int]) -> dict[int, datetime]:
    """When each request's wait at its current step began (its latest decision), one query."""
    ids = sorted(set(request_ids))
    rows = session.execute(
        select(Decision.request_id, func.max(col(Decision.created_at)))
        .where(col(Decision.request_id).in_(ids))
        .group_by(col(Decision.request_id))
    ).all()
    return {int(i): at for i, at in ((i, _aware(at)) for i, at in rows) if at is not None}


def _finding_deadlines(
    session: Session, actor: Actor, since: datetime, until: datetime
) -> list[Deadline]:
    rows = session.execute(
        select(Finding, Organisation.name)
        .join(Organisation, col(Organisation.id) == col(Finding.org_id))
        .where(
            actor.reach_filter(),
            col(Finding.status) == "open",
            col(Finding.due) >= since,
            col(Finding.due) <= until,
        )
        .order_by(col(Finding.due), col(Finding.id))
        .limit(MAX_EVENTS)
    ).all()
    return [
        Deadline(
            uid=f"finding-{f.id}",
            title=f"{name}：督导意见整改截止",
            due=f.due,
            path=f"/runs/{f.run_id}" if f.run_id else f"/orgs/{f.org_id}",
            detail=f.text[:200],
            sequence=f.escalation_level,
            modified=f.created_at,
        )
        for f, name in rows
    ]

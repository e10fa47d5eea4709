"""工作台 (`/`): my runs with progress and deadline, the work my committee owes (待点评 N 个支部:
branches whose current stage waits on our review or decision, oldest first), my approval inbox,
my unread notices (the newest few; all of them in the notice centre, api/web/notices.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlmodel import Session, col, select

from api.web import session as web
from api.web.notices import SUMMARY
from api.web.notices import views as notice_views
from api.web.runs import Badge, Opinion, Progress, deadline_badge, last_return, progress
from states import inbox, runs
from states.campaigns import template_by_digest
from states.catalog import DONE
from states.db import read_session
from states.holders import ABOVE, holders, owed_to
from states.models import Campaign, Organisation, Role, Run, TemplateVersion
from states.owners import word
from states.queries import approval_inbox
from states.runs import ACT_ROLES, RunContext
from states.timeutil import utcnow
from states.users import Actor
from states.workcal import WorkCalendar, load_calendar

router = APIRouter(include_in_schema=False)

#: The desk shows at most this many runs and approvals (each list links onwards).
DESK_LIMIT = 50
#: Unread notices on the desk; the rest are in the notice centre (/notices).
DESK_NOTICES = 10


@dataclass(frozen=True)
class RunCard:
    id: int
    org_name: str
    campaign_name: str
    stage_name: str
    progress: Progress
    badge: Badge
    needs: list[str]
    pending: bool
    returned: Opinion | None
    done: bool
    #: Set when the stage waits on the superior's own work (待上级点评 …), not the branch's.
    held_above: str | None = None
    held_word: str = ""


@dataclass(frozen=True)
class ApprovalLine:
    request_id: int
    run_id: int
    org_name: str
    campaign_name: str
    kind: str
    stage_name: str
    submitted_at: datetime
    badge: Badge


def my_runs(session: Session, actor: Actor, now: datetime, cal: WorkCalendar) -> list[RunCard]:
    """The runs of the organisations where the actor acts herself (secretary or their own)."""
    own = sorted({g.org_id for g in actor.grants if g.role in ACT_ROLES})
    if not own:
        return []
    rows = session.execute(
        select(Run, Organisation, Campaign, TemplateVersion.digest)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(col(Run.org_id).in_(own))
        .order_by(col(Run.completed_at).is_not(None), col(Run.deadline), col(Run.id))
        .limit(DESK_LIMIT)
    ).all()
    tpls = {
        campaign.id or 0: template_by_digest(session, campaign.template_version_id, digest)
        for _r, _o, campaign, digest in rows
    }
    held = holders(session, [r for r, *_ in rows], tpls, cal, now)
    cards = []
    for run, org, campaign, _digest in rows:
        tpl = tpls[campaign.id or 0]
        ctx = RunContext(run, campaign, org, tpl)
        needs = [c.reason for c in runs.checklist(session, ctx) if not c.met]
        above = held[run.id or 0].label if held[run.id or 0].kind == ABOVE else None
        cards.append(
            RunCard(
                id=run.id or 0,
                org_name=org.name,
                campaign_name=campaign.name,
                stage_name=tpl.stage_name(run.stage),
                progress=progress(tpl, run.stage),
                badge=Badge("amber", above) if above else deadline_badge(run, now, cal),
                needs=needs,
                pending=run.pending_request_id is not None,
                returned=last_return(session, run),
                done=run.stage == DONE,
                held_above=above,
                held_word=word(tpl, run.stage) if above else "",
            )
        )
    return cards


def my_approvals(
    session: Session, actor: Actor, now: datetime, cal: WorkCalendar
) -> tuple[list[ApprovalLine], int]:
    rows, total = approval_inbox(session, actor, limit=DESK_LIMIT)
    lines = []
    for row in rows:
        version = session.get(TemplateVersion, row.campaign.template_version_id)
        assert version is not None
        tpl = template_by_digest(session, version.id or 0, version.digest)
        req = row.request
        lines.append(
            ApprovalLine(
                request_id=req.id or 0,
                run_id=row.run.id or 0,
                org_name=row.org.name,
                campaign_name=row.campaign.name,
                kind="延期申请" if req.kind == "extension" else "推进申请",
                stage_name=tpl.stage_name(req.from_stage),
                submitted_at=req.submitted_at,
                badge=deadline_badge(row.run, now, cal),
            )
        )
    return lines, total


def is_approver(actor: Actor) -> bool:
    return actor.has_role(Role.COMMITTEE) or actor.has_role(Role.ADMIN)


@router.get("/")
def desk(request: Request, actor: Actor = Depends(web.page_actor)) -> Response:
    now = utcnow()
    ctx: dict[str, Any] = {}
    with read_session(request.app.state.engine) as s:
        cal = load_calendar(s)
        ctx["runs"] = my_runs(s, actor, now, cal)
        ctx["approver"] = is_approver(actor)
        ctx["owed"], ctx["owed_groups"], ctx["owed_total"] = owed_to(s, actor, limit=DESK_LIMIT)
        ctx["approvals"], ctx["approvals_total"] = (
            my_approvals(s, actor, now, cal) if ctx["approver"] else ([], 0)
        )
        notices, _, unread = inbox.list_for(s, actor.user_id, unread_only=True, limit=DESK_NOTICES)
        ctx["notices"], ctx["unread"] = notice_views(s, notices), unread
        ctx["summary"] = SUMMARY
        ctx["overseer"] = any(
            actor.has_role(r) for r in (Role.COMMITTEE, Role.ORGANISER, Role.ADMIN, Role.SUPERVISOR)
        )
        return web.render(request, "desk.html", ctx)  # inside: the rows expire on close

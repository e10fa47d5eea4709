"""Campaign dashboard pages: /campaigns and /campaigns/{id} (committees, organisers, admins).

The overdue figures are split by who holds each run (支部逾期 / 审批逾期 / 上级逾期), and every
overdue unit says who holds it (支部办理中, 待 X 审批 · 已 N 个工作日, 待上级点评 …).

Counts are those of the API's campaign status, scoped the same way (`campaign_scope`): a
committee inside the campaign sees its own subtree. `?org=` drills down to a unit in reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup
from sqlmodel import Session, col, select

from api.deps import MAX_ID, IdPath, engine_of
from api.diagram import template_svg
from api.web.session import not_found, page_actor, render
from states import bulletins
from states.campaigns import LAUNCH_ROLES, CampaignStatus, campaign_status, campaign_template
from states.catalog import DONE, Template
from states.db import read_session
from states.errors import NotFound
from states.holders import OVERDUE_LABELS, Holder, holders, overdue_by_holder
from states.models import Campaign, Organisation, Run
from states.orgs import ancestors, is_within
from states.queries import (
    ChildProgress,
    campaign_runs,
    campaigns_for,
    narrow_scope,
    progress_by_child,
    visible_campaign,
)
from states.timeutil import local_date, utcnow
from states.users import Actor
from states.workcal import load_calendar

router = APIRouter(include_in_schema=False)
PAGE = 20
OVERDUE_PAGE = 100
ESCALATION = {0: "未督办", 1: "逾期提醒", 2: "二级督办", 3: "三级督办"}


@dataclass(frozen=True)
class ListRow:
    campaign: Campaign
    root: Organisation
    status: CampaignStatus


@router.get("/campaigns", response_class=HTMLResponse)
def campaign_list(
    request: Request,
    actor: Annotated[Actor, Depends(page_actor)],
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """The campaigns whose subtree meets mine, newest first, with my share of them done."""
    with read_session(engine_of(request)) as s:
        rows, total = campaigns_for(s, actor, limit=PAGE, offset=offset)
        items = []
        for campaign, root in rows:  # one grouped query per campaign on the page (≤ PAGE)
            _c, _r, scope = visible_campaign(s, campaign.id or 0, actor)
            status = campaign_status(s, campaign, scope=None if scope == [root.path] else scope)
            items.append(ListRow(campaign, root, status))
        return render(
            request,
            "campaigns.html",
            {
                "items": items,
                "total": total,
                "offset": offset,
                "page": PAGE,
                "can_launch": any(actor.has_role(r) for r in LAUNCH_ROLES),
            },
        )


@dataclass(frozen=True)
class OverdueRow:
    run: Run
    org: Organisation
    stage_name: str
    days: int
    level: str
    holder: Holder


@dataclass(frozen=True)
class ChildRow:
    progress: ChildProgress
    run_id: int | None
    reachable: bool


def _focus(
    s: Session, actor: Actor, root: Organisation, scope: list[str], org_id: int | None
) -> tuple[Organisation, list[str]]:
    """Return the organisation the page looks at and the scope under it (404 if out of reach)."""
    if org_id is None:
        if len(scope) == 1 and scope[0] != root.path:
            org = s.execute(select(Organisation).where(Organisation.path == scope[0])).scalar_one()
            return org, scope
        return root, scope
    org = s.get(Organisation, org_id)
    if org is None or not is_within(org.path, root.path) or not actor.reaches(org.path):
        raise NotFound("组织不存在")
    narrowed = narrow_scope(scope, org.path)
    if not narrowed:
        raise NotFound("组织不存在")
    return org, narrowed


def _overdue(s: Session, campaign: Campaign, tpl: Template, scope: list[str]) -> Any:
    """The most overdue runs, each with who holds it (one query for the page's holders)."""
    now = utcnow()
    rows, total = campaign_runs(
        s, campaign, scope, overdue=True, now=now, limit=OVERDUE_PAGE, most_overdue_first=True
    )
    held = holders(s, [r for r, _o in rows], {campaign.id or 0: tpl}, load_calendar(s), now)
    out = [
        OverdueRow(
            run=r,
            org=o,
            stage_name=tpl.stage_name(r.stage),
            days=max(1, (local_date(now) - local_date(r.deadline)).days) if r.deadline else 0,
            level=ESCALATION.get(r.escalation_level, f"{r.escalation_level} 级督办"),
            holder=held[r.id or 0],
        )
        for r, o in rows
    ]
    return out, total


def _run_ids(s: Session, campaign: Campaign, org_ids: list[int]) -> dict[int, int]:
    """Return the run id of each of these organisations in the campaign (one query)."""
    if not org_ids:
        return {}
    rows = s.execute(
        select(Run.org_id, Run.id).where(
            Run.campaign_id == campaign.id, col(Run.org_id).in_(org_ids)
        )
    ).all()
    return {int(o): int(r) for o, r in rows}


@router.get("/campaigns/{campaign_id:int}", response_class=HTMLResponse)
def campaign_page(
    request: Request,
    campaign_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
    org: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """Counts per stage (chart and state diagram), share done, drill-down, overdue list, and the
    latest stored weekly bulletin of the organisation in focus."""
    with read_session(engine_of(request)) as s:
        try:
            campaign, root, scope = visible_campaign(s, campaign_id, actor)
            focus, narrowed = _focus(s, actor, root, scope, org)
        except NotFound:
            return not_found(request)
        tpl = campaign_template(s, campaign)
        status = campaign_status(s, campaign, scope=None if narrowed == [root.path] else narrowed)
        children = progress_by_child(s, campaign, narrowed, focus)
        run_ids = _run_ids(s, campaign, [focus.id or 0] + [c.org.id or 0 for c in children])
        overdue, overdue_total = _overdue(s, campaign, tpl, narrowed)
        split = overdue_by_holder(
            s, campaign, tpl, None if narrowed == [root.path] else narrowed, utcnow()
        )
        crumbs = [
            a
            for a in reversed(ancestors(s, focus))
            if is_within(a.path, root.path) and actor.reaches(a.path)
        ]
        bulletin = bulletins.latest(s, focus.id or 0, campaign.id)
        counts = {st.stage: st.runs for st in status.stages}
        biggest = max([st.runs for st in status.stages] + [1])
        return render(
            request,
            "campaign.html",
            {
                "campaign": campaign,
                "root": root,
                "tpl": tpl,
                "focus": focus,
                "crumbs": crumbs,
                "status": status,
                "biggest": biggest,
                "done_id": DONE,
                "diagram": Markup(template_svg(tpl, counts=counts)),  # our own SVG, escaped inside
                "children": [
                    ChildRow(c, run_ids.get(c.org.id or 0), actor.reaches(c.org.path))
                    for c in children
                ],
                "stage_ids": [*tpl.stage_ids, DONE],
                "own_run_id": run_ids.get(focus.id or 0),
                "overdue": overdue,
                "overdue_total": overdue_total,
                "overdue_page": OVERDUE_PAGE,
                "overdue_split": [(OVERDUE_LABELS[k], n, k) for k, n in split.items()],
                "bulletin": bulletin,
            },
        )

"""`GET /api/v1/me/runs`: the caller's runs, with stage, deadline and what is still needed.

Which runs (`scope`):

* `own` (default): the runs of the organisations the caller acts for herself, i.e. where she
  holds secretary, committee or admin on that very organisation (the desk's list); a branch
  secretary sees her branch's runs.
* `reach`: every run within the caller's reach (committees, organisers, supervisors and admins
  see their subtree; a secretary still sees only her own organisation).

Unfinished runs first, by deadline. "What is still needed" is each unmet requirement's reason,
exactly as on the run's page, computed for the whole page at once: one grouped query counts the
active records linked to every run's current stage, one reads the rosters of the page's
organisations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import Field
from sqlalchemy import ColumnElement, and_, false, func
from sqlmodel import Session, col, select

from api import schemas as S
from api.deps import Page, page, reader
from api.errors import responses
from api.security import authenticated
from api.v1.convert import org_brief
from states.campaigns import template_by_digest
from states.catalog import DONE, Template
from states.members.models import ACTIVE, Member
from states.models import (
    Campaign,
    Evidence,
    EvidenceLink,
    Organisation,
    Role,
    Run,
    TemplateVersion,
)
from states.requirements import RunFacts, evaluate
from states.timeutil import format_local, local_date, utcnow
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["登录"])
OWN_ROLES = frozenset({Role.SECRETARY, Role.COMMITTEE, Role.ADMIN})
Scope = Literal["own", "reach"]


class StageRef(S.Out):
    id: str
    name: str


class CampaignRef(S.Out):
    id: int
    name: str
    template: str


class MyRunOut(S.Out):
    id: int
    campaign: CampaignRef
    org: S.OrgBrief
    stage: StageRef
    deadline: S.LocalTime | None
    deadline_local: str = Field(description="截止时间（上海时间，如 2026-12-31 23:59）或“无期限”")
    overdue: bool
    days_left: int | None = Field(description="距截止的天数（按上海日期；负数为已逾期）")
    pending_request_id: int | None
    done: bool
    needs: list[str] = Field(description="本阶段尚未满足的条件及原因（与进度页面相同）")


Row = tuple[Run, Organisation, Campaign, str]


def _where(actor: Actor, scope: Scope) -> ColumnElement[bool]:
    if scope == "reach":
        return actor.reach_filter()
    own = sorted({g.org_id for g in actor.grants if g.role in OWN_ROLES})
    return col(Run.org_id).in_(own) if own else false()


def _page(s: Session, actor: Actor, scope: Scope, p: Page) -> tuple[list[Row], int]:
    base = (
        select(Run, Organisation, Campaign, TemplateVersion.digest)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(_where(actor, scope))
    )
    total = s.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    order = (
        col(Run.completed_at).is_not(None),
        col(Run.deadline).is_(None),
        col(Run.deadline),
        col(Run.id),
    )
    rows = s.execute(base.order_by(*order).limit(p.limit).offset(p.offset)).all()
    return [(r, o, c, d) for r, o, c, d in rows], int(total)


def _counts(s: Session, run_ids: list[int]) -> dict[int, dict[tuple[str, str | None], int]]:
    """Active records linked to each run's current stage, per (kind, subject): one query."""
    out: dict[int, dict[tuple[str, str | None], int]] = {i: {} for i in run_ids}
    if not run_ids:
        return out
    rows = s.execute(
        select(EvidenceLink.run_id, Evidence.kind, Evidence.subject, func.count())
        .join(Evidence, col(Evidence.id) == col(EvidenceLink.evidence_id))
        .join(
            Run,
            and_(
                col(Run.id) == col(EvidenceLink.run_id), col(Run.stage) == col(EvidenceLink.stage)
            ),
        )
        .where(col(EvidenceLink.run_id).in_(run_ids), Evidence.status == "active")
        .group_by(col(EvidenceLink.run_id), col(Evidence.kind), col(Evidence.subject))
    ).all()
    for run_id, kind, subject, n in rows:
        out[int(run_id)][(kind, subject)] = int(n)
    return out


def _rosters(s: Session, org_ids: list[int]) -> dict[int, dict[int, str]]:
    """The 在册 members of each organisation, id -> name, by name (one query)."""
    out: dict[int, dict[int, str]] = {}
    if not org_ids:
        return out
    rows = s.execute(
        select(Member.org_id, Member.id, Member.name)
        .where(col(Member.org_id).in_(sorted(set(org_ids))), Member.status == ACTIVE)
        .order_by(col(Member.org_id), col(Member.name), col(Member.id))
    ).all()
    for org_id, member_id, name in rows:
        out.setdefault(int(org_id), {})[int(member_id)] = name
    return out


def _facts(org: Organisation, counts: dict[Any, int], roster: dict[int, str] | None) -> RunFacts:
    """The same facts `states.requirements.load_facts` builds for one run."""
    if roster:
        return RunFacts(len(roster), counts, roster)
    return RunFacts(org.member_count, counts)


def needs_of(s: Session, rows: list[Row]) -> dict[int, list[str]]:
    """The unmet requirement reasons of each unfinished run's current stage."""
    open_rows = [(r, o, c, d) for r, o, c, d in rows if r.stage != DONE]
    counts = _counts(s, [r.id or 0 for r, *_ in open_rows])
    rosters = _rosters(s, [o.id or 0 for _, o, *_ in open_rows])
    out: dict[int, list[str]] = {}
    for run, org, campaign, digest in open_rows:
        tpl = template_by_digest(s, campaign.template_version_id, digest)
        facts = _facts(org, counts[run.id or 0], rosters.get(org.id or 0))
        out[run.id or 0] = [c.reason for c in evaluate(tpl.stage(run.stage), facts) if not c.met]
    return out


def _item(row: Row, tpl: Template, needs: list[str], now: datetime) -> MyRunOut:
    run, org, campaign, _ = row
    deadline, live = run.deadline, run.completed_at is None
    return MyRunOut(
        id=run.id or 0,
        campaign=CampaignRef(
            id=campaign.id or 0, name=campaign.name, template=campaign.template_key
        ),
        org=org_brief(org),
        stage=StageRef(id=run.stage, name=tpl.stage_name(run.stage)),
        deadline=deadline,
        deadline_local=format_local(deadline) if deadline else "无期限",
        overdue=bool(deadline is not None and live and deadline < now),
        days_left=(local_date(deadline) - local_date(now)).days if deadline and live else None,
        pending_request_id=run.pending_request_id,
        done=run.stage == DONE,
        needs=needs,
    )


ScopeQuery = Query(
    "own",
    description="own：本人任书记（或本组织委员、管理员）的组织的进度；reach：管辖范围内的全部进度",
)


@router.get(
    "/me/runs",
    summary="我的创建进度：阶段、截止时间、尚缺什么",
    response_model=S.Page[MyRunOut],
    responses=responses(401, 422),
)
def my_runs(
    scope: Scope = ScopeQuery,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[MyRunOut]:
    """未完成的在前，按截止时间排列，分页（每页最多 200 条）。needs 与进度页面的条件清单一致。"""
    rows, total = _page(s, actor, scope, p)
    needs = needs_of(s, rows)
    now = utcnow()
    items = [
        _item(row, template_by_digest(s, c.template_version_id, d), needs.get(r.id or 0, []), now)
        for row in rows
        for r, _, c, d in [row]
    ]
    return S.Page(items=items, total=total, limit=p.limit, offset=p.offset)

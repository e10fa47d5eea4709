"""`GET /api/v1/me/owed`: the runs waiting on work the caller's organisations owe.

A stage owed above the branch (领导点评, 评选表彰, 定级 …) waits on the committee that owes it;
this lists those runs, oldest first, with the counts per stage ("待点评 12 个支部"). Only runs
owed by an organisation where the caller holds the owing role appear, so a token from outside
that subtree sees an empty list.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import Page, page, reader
from api.errors import responses
from api.security import authenticated
from api.v1.convert import org_brief
from states.holders import OwedGroup, OwedRow, owed_to
from states.timeutil import format_local
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["登录"])


class OwedGroupOut(S.Out):
    campaign_id: int
    campaign_name: str
    stage: str
    stage_name: str
    count: int
    label: str = Field(description="如“待点评 12 个支部”")


class OwedRunOut(S.Out):
    run_id: int
    campaign_id: int
    campaign_name: str
    org: S.OrgBrief
    stage: str
    stage_name: str
    waiting_for: str = Field(description="待完成的事：点评、表彰决定、定级……")
    entered_at: S.LocalTime
    deadline: S.LocalTime | None
    deadline_local: str


class OwedOut(S.Page[OwedRunOut]):
    groups: list[OwedGroupOut]


def _group(g: OwedGroup) -> OwedGroupOut:
    return OwedGroupOut(
        campaign_id=g.campaign_id,
        campaign_name=g.campaign_name,
        stage=g.stage,
        stage_name=g.stage_name,
        count=g.count,
        label=g.label,
    )


def _item(o: OwedRow) -> OwedRunOut:
    return OwedRunOut(
        run_id=o.run.id or 0,
        campaign_id=o.campaign.id or 0,
        campaign_name=o.campaign.name,
        org=org_brief(o.org),
        stage=o.run.stage,
        stage_name=o.stage_name,
        waiting_for=o.word,
        entered_at=o.run.entered_at,
        deadline=o.run.deadline,
        deadline_local=format_local(o.run.deadline) if o.run.deadline else "无期限",
    )


@router.get(
    "/me/owed",
    summary="待我完成：本组织须点评、决定或定级的下级创建进度",
    response_model=OwedOut,
    responses=responses(401, 422),
)
def my_owed(
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> OwedOut:
    """进入该阶段最早的在前，分页；groups 为各活动各阶段的数量（如“待点评 12 个支部”）。"""
    rows, groups, total = owed_to(s, actor, limit=p.limit, offset=p.offset)
    return OwedOut(
        items=[_item(o) for o in rows],
        total=total,
        limit=p.limit,
        offset=p.offset,
        groups=[_group(g) for g in groups],
    )

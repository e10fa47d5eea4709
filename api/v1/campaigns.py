"""Campaigns: launch (organisers), progress, runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from api import schemas as S
from api.deps import MAX_ID, Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import roles
from api.v1.convert import campaign_brief, org_brief, run_brief
from api.v1.orgs import visible_org
from states.campaigns import (
    LAUNCH_ROLES,
    campaign_status,
    campaign_template,
    count_participants,
    launch_campaign,
    refuse_past_deadlines,
)
from states.catalog import DONE, get_template
from states.errors import InvalidInput
from states.holders import holders, overdue_by_holder
from states.models import ORG_KINDS
from states.queries import VIEW_ROLES, campaign_runs, campaigns_for, visible_campaign
from states.schedule import parse_schedule
from states.timeutil import local_date, utcnow
from states.users import Actor
from states.workcal import load_calendar

router = APIRouter(prefix="/api/v1", tags=["活动"])
viewers = roles(*sorted(VIEW_ROLES))
launchers = roles(*sorted(LAUNCH_ROLES))


def _kinds(body: S.CampaignIn, participants: list[str]) -> list[str]:
    kinds = list(body.kinds or participants)
    bad = [k for k in kinds if k not in ORG_KINDS]
    if bad or not kinds:
        raise InvalidInput(
            f"未知的组织类型：{'、'.join(bad) or '（空）'}（可选：{'、'.join(ORG_KINDS)}）",
            details=[{"field": "kinds"}],
        )
    return kinds


def _schedule(body: S.CampaignIn) -> dict[str, object] | None:
    if body.schedule is None:
        return None
    return {k: v.model_dump(mode="json", exclude_none=True) for k, v in body.schedule.items()}


@router.post(
    "/campaigns/preview",
    summary="预览发起活动：将创建多少个支部的创建进度",
    response_model=S.PreviewOut,
    responses=responses(401, 403, 404, 422),
)
def preview(
    body: S.CampaignIn, actor: Actor = Depends(launchers), s: Session = Depends(reader)
) -> S.PreviewOut:
    """不写入任何数据，只校验并返回将创建的创建进度数，供确认前查看。截止日期已过的阶段与发起时一样被拒绝（除非 allow_past）。"""
    tpl = get_template(body.template)
    root = visible_org(s, body.root_org_id, actor)
    kinds = _kinds(body, tpl.participants)
    now = utcnow()
    plan = parse_schedule(tpl, _schedule(body), local_date(now).year)
    if not body.allow_past:
        refuse_past_deadlines(tpl, plan, now)
    return S.PreviewOut(runs=count_participants(s, root, kinds), root=org_brief(root), kinds=kinds)


def _campaign_out(s: Session, campaign_id: int, actor: Actor) -> S.CampaignOut:
    campaign, root, scope = visible_campaign(s, campaign_id, actor)
    status = campaign_status(s, campaign, scope=None if scope == [root.path] else scope)
    tpl = campaign_template(s, campaign)
    split = overdue_by_holder(s, campaign, tpl, None if scope == [root.path] else scope, utcnow())
    return S.CampaignOut(
        id=campaign.id or 0,
        name=campaign.name,
        template=campaign.template_key,
        template_version=campaign.template_version,
        root=org_brief(root),
        kinds=campaign.kinds,
        schedule=campaign.schedule,
        launched_at=campaign.launched_at,
        scope=scope,
        total=status.total,
        stages=[S.StageCountOut.model_validate(st, from_attributes=True) for st in status.stages],
        overdue=status.overdue,
        overdue_by_holder=split,
        waiting=status.waiting,
        done=status.done,
        percent_done=status.percent_done,
    )


@router.post(
    "/campaigns",
    summary="发起活动",
    status_code=201,
    response_model=S.CampaignOut,
    responses=responses(401, 403, 404, 409, 422),
)
def create_campaign(
    body: S.CampaignIn,
    request: Request,
    actor: Actor = Depends(launchers),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """在发起组织之下为每个参与组织创建一份创建进度（一次性批量写入）。须为该组织或其上级的组织员或管理员。

    日程中有截止日期已过的阶段时返回 422 并列出各阶段及其截止日期，除非 `allow_past` 为 true。
    """
    tpl = get_template(body.template)
    kinds = _kinds(body, tpl.participants)

    def change(s: Session, actor: Actor) -> S.CampaignOut:
        root = visible_org(s, body.root_org_id, actor)
        campaign = launch_campaign(
            s,
            template_key=tpl.key,
            root_code=root.code,
            kinds=kinds,
            schedule=_schedule(body),
            name=body.name,
            actor=actor,
            allow_past=body.allow_past,
        )
        s.flush()
        return _campaign_out(s, campaign.id or 0, actor)

    return write(request, actor, idem, 201, change)


@router.get(
    "/campaigns",
    summary="活动列表",
    response_model=S.Page[S.CampaignBrief],
    responses=responses(401, 403, 422),
)
def list_campaigns(
    actor: Actor = Depends(viewers), s: Session = Depends(reader), p: Page = Depends(page)
) -> S.Page[S.CampaignBrief]:
    """返回与本人管辖范围有交集的活动，最新的在前。"""
    rows, total = campaigns_for(s, actor, limit=p.limit, offset=p.offset)
    return S.Page(
        items=[campaign_brief(c, o) for c, o in rows], total=total, limit=p.limit, offset=p.offset
    )


@router.get(
    "/campaigns/{campaign_id:int}",  # an integer, so that /campaigns/preview is never an id
    summary="活动进度：各阶段数量、逾期、待审批、完成比例",
    response_model=S.CampaignOut,
    responses=responses(401, 403, 404, 422),
)
def get_campaign(
    campaign_id: IdPath, actor: Actor = Depends(viewers), s: Session = Depends(reader)
) -> S.CampaignOut:
    """统计范围为本人可见的部分：上级党委看全部，下级党委只看本组织及下级。"""
    return _campaign_out(s, campaign_id, actor)


@router.get(
    "/campaigns/{campaign_id}/runs",
    summary="活动中各支部的创建进度",
    response_model=S.Page[S.RunBrief],
    responses=responses(401, 403, 404, 422),
)
def list_runs(
    campaign_id: IdPath,
    stage: str | None = Query(None, max_length=64, description="只看此阶段（done 为已完成）"),
    overdue: bool | None = Query(None, description="true 只看逾期，false 只看未逾期"),
    org: int | None = Query(None, ge=1, le=MAX_ID, description="只看此组织及其下级"),
    actor: Actor = Depends(viewers),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[S.RunBrief]:
    """按组织路径排序，分页；可按阶段、是否逾期、组织（含下级）筛选。"""
    campaign, _root, scope = visible_campaign(s, campaign_id, actor)
    tpl = campaign_template(s, campaign)
    if stage is not None and stage not in [*tpl.stage_ids, DONE]:
        raise InvalidInput(
            f"模板中没有阶段 {stage}（可选：{'、'.join([*tpl.stage_ids, DONE])}）",
            details=[{"field": "stage"}],
        )
    within = visible_org(s, org, actor) if org is not None else None
    now = utcnow()
    rows, total = campaign_runs(
        s,
        campaign,
        scope,
        stage=stage,
        overdue=overdue,
        within=within,
        now=now,
        limit=p.limit,
        offset=p.offset,
    )
    held = holders(s, [r for r, _o in rows], {campaign.id or 0: tpl}, load_calendar(s), now)
    return S.Page(
        items=[
            run_brief(r, o, tpl, now).model_copy(update={"holder": held[r.id or 0].label})
            for r, o in rows
        ],
        total=total,
        limit=p.limit,
        offset=p.offset,
    )

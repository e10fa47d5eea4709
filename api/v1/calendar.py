"""`GET /api/v1/me/calendar`: the caller's personal deadline feed address; replacing it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from api import schemas as S
from api.deps import engine_of
from api.errors import responses
from api.security import authenticated
from api.web.calendar import feed_url
from states.calfeed.service import feed_token, reset_feed
from states.db import unit_of_work
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["登录"])


class CalendarOut(S.Out):
    url: str = Field(
        description="个人截止日期日历的订阅地址（iCalendar；地址即凭证，勿转发；更换后原地址立即失效）"
    )


@router.get(
    "/me/calendar",
    summary="我的日历订阅地址",
    response_model=CalendarOut,
    responses=responses(401),
)
def my_calendar(request: Request, actor: Actor = Depends(authenticated)) -> CalendarOut:
    """返回本人的截止日期日历订阅地址（首次调用时生成）。日历列出管辖范围内各创建进度当前阶段的截止时间、
    待本人审批的申请的办理时限、督导意见的整改期限；每个事件链接到进度页面，延期后同一事件自动更新。"""
    with unit_of_work(engine_of(request)) as s:
        token = feed_token(s, actor.user_id)
    return CalendarOut(url=feed_url(request, token))


@router.post(
    "/me/calendar/reset",
    summary="更换日历订阅地址",
    response_model=CalendarOut,
    responses=responses(401),
)
def reset_calendar(request: Request, actor: Actor = Depends(authenticated)) -> CalendarOut:
    """生成新的订阅地址并返回；原地址立即失效（访问返回 404）。"""
    with unit_of_work(engine_of(request)) as s:
        token = reset_feed(s, actor.user_id)
    return CalendarOut(url=feed_url(request, token))

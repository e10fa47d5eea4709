"""Notification settings: an organisation's robots and webhooks, its own wording, opt-outs."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import Field, StrictBool
from sqlalchemy import func
from sqlmodel import Session, col, select

from api import schemas as S
from api.deps import Idem, IdPath, Page, engine_of, idempotency_key, page, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller, roles
from api.v1.orgs import visible_org
from notifications import sandbox
from notifications.render import (
    EVENT_KINDS,
    KIND_LABELS,
    SAMPLE,
    Rendered,
    render,
    validate_override,
)
from states import notice_settings as ns
from states.campaigns import LAUNCH_ROLES
from states.db import unit_of_work
from states.errors import Forbidden, NotFound
from states.models import Delivery, NoticeTemplate, Organisation, OutboxMessage, User
from states.orgs import subtree_filter
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["通知设置"])
managers = roles(*sorted(LAUNCH_ROLES))  # the organisers and admins who launch campaigns


class ChannelIn(S.In):
    id: int | None = Field(
        default=None, ge=1, le=2_147_483_647, description="已有渠道的编号（保留未改的地址与密钥）"
    )
    kind: str = Field(description="wecom | dingtalk | feishu | webhook")
    url: str | None = Field(
        default=None,
        max_length=500,
        description="完整地址（须为公网地址，不含用户名）或机器人的 key / access_token；不填则保留原值",
    )
    secret: str | None = Field(
        default=None, max_length=200, description="签名密钥；不填则保留原值，填空字符串则清除"
    )
    enabled: StrictBool = True
    quiet_hours: str | None = Field(
        default=None, max_length=11, description="免打扰时段 HH:MM-HH:MM（上海时间）"
    )
    escalations_in_quiet: StrictBool = Field(
        default=True, description="免打扰时段内督办类通知仍然发送"
    )


class ChannelsIn(S.In):
    channels: list[ChannelIn] = Field(max_length=20)


class ChannelOut(S.Out):
    id: int
    kind: str
    kind_label: str
    url: str = Field(description="地址（密钥部分已遮盖）")
    has_secret: bool
    secret: str | None = Field(description="密钥（只显示末 4 位）")
    enabled: bool
    quiet_hours: str | None
    escalations_in_quiet: bool
    paused_until: S.LocalTime | None


class TemplateIn(S.In):
    source: str = Field(
        min_length=1, max_length=8000, description="Jinja2 模板：须有 title 与 body 两个 block"
    )


class TemplateOut(S.Out):
    event_kind: str
    label: str
    org_id: int
    source: str | None
    preview_title: str
    preview_text: str
    last_error: str | None = Field(
        default=None, description="最近一次发送时该措辞出错的原因（出错时改用系统默认措辞）"
    )
    last_error_at: S.LocalTime | None = Field(default=None, description="最近一次出错的时间")
    failures: int = Field(default=0, description="保存以来发送时出错的次数")


EMAIL = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class PrefsIn(S.In):
    email: StrictBool = Field(description="是否接收电子邮件通知（站内消息总会送达）")
    address: str | None = Field(
        default=None, max_length=200, pattern=EMAIL, description="电子邮箱；不填则保留原值"
    )


class PrefsOut(S.Out):
    email: bool
    address: str | None = Field(description="电子邮箱")


class DeliveryOut(S.Out):
    id: int
    outbox_id: int
    event_kind: str
    channel: str
    target: str
    message_id: str
    status: str
    attempts: int
    last_error: str | None
    next_attempt_at: S.LocalTime
    sent_at: S.LocalTime | None


def _manageable(s: Session, org_id: int, actor: Actor) -> Organisation:
    org = visible_org(s, org_id, actor)
    if not actor.holds_here_or_above(org.id or 0, org.path, LAUNCH_ROLES):
        raise Forbidden("只有本组织或上级的组织员、管理员可以管理通知设置")
    return org


def _channel_out(ch: Any) -> ChannelOut:
    return ChannelOut(
        id=ch.id,
        kind=ch.kind,
        kind_label=ns.KIND_LABELS.get(ch.kind, ch.kind),
        url=ns.mask_url(ch.url),
        has_secret=bool(ch.secret),
        secret=ns.mask(ch.secret),
        enabled=ch.enabled,
        quiet_hours=ch.quiet_hours,
        escalations_in_quiet=ch.escalations_in_quiet,
        paused_until=ch.paused_until,
    )


@router.get(
    "/orgs/{org_id}/channels",
    summary="组织的通知渠道（机器人、Webhook）",
    response_model=list[ChannelOut],
    responses=responses(401, 403, 404, 422),
)
def get_channels(
    org_id: IdPath, actor: Actor = Depends(managers), s: Session = Depends(reader)
) -> list[ChannelOut]:
    """地址中的 key 与签名密钥只显示末几位，不会完整返回。"""
    org = _manageable(s, org_id, actor)
    return [_channel_out(c) for c in ns.channels_of(s, org.id or 0)]


@router.put(
    "/orgs/{org_id}/channels",
    summary="设置组织的通知渠道（整体替换）",
    response_model=list[ChannelOut],
    responses=responses(401, 403, 404, 409, 422),
)
def put_channels(
    org_id: IdPath,
    body: ChannelsIn,
    request: Request,
    actor: Actor = Depends(managers),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """列表中没有的渠道会被删除；带 id 且不填 url/secret 的渠道保留原来的地址与密钥；
    不带 id 而类型与地址同已有渠道的即为该渠道。本机、内网、链路本地等地址返回 422
    （私有部署可由运维设置 DANGJIAN_OUTBOUND_ALLOW 放行）；同一类型与地址出现两次返回 422。"""

    def change(s: Session, actor: Actor) -> list[ChannelOut]:
        org = _manageable(s, org_id, actor)
        specs = [ns.ChannelSpec(**c.model_dump()) for c in body.channels]
        return [_channel_out(c) for c in ns.replace_channels(s, org, specs, actor_id=actor.user_id)]

    return write(request, actor, idem, 200, change)


def _template_out(
    s: Session, org: Organisation, kind: str, preview: Rendered | None = None
) -> TemplateOut:
    if kind not in EVENT_KINDS:
        raise NotFound(f"没有这种通知：{kind}", details={"event_kind": kind})
    row = s.execute(
        select(NoticeTemplate).where(
            NoticeTemplate.org_id == org.id, NoticeTemplate.event_kind == kind
        )
    ).scalar_one_or_none()
    if preview is None:
        preview = render(kind, SAMPLE, override=row.source if row else None, wait=sandbox.BUSY_WAIT)
    return TemplateOut(
        event_kind=kind,
        label=KIND_LABELS[kind],
        org_id=org.id or 0,
        source=row.source if row else None,
        preview_title=preview.title,
        preview_text=preview.text,
        last_error=row.last_error if row else None,
        last_error_at=row.last_error_at if row else None,
        failures=row.failures if row else 0,
    )


async def _validated(event_kind: str, source: str) -> Rendered:
    """Render the sample in a worker thread once a render slot is free; waiting holds no
    thread, so a burst of saves cannot starve other requests. RateLimited after a few seconds."""
    waited = 0.0
    while not sandbox.try_slot():
        if waited >= sandbox.BUSY_WAIT:
            raise sandbox.busy()
        await anyio.sleep(0.05)
        waited += 0.05
    try:
        return await run_in_threadpool(_validate_in_slot, event_kind, source)
    finally:
        sandbox.release_slot()


def _validate_in_slot(event_kind: str, source: str) -> Rendered:
    with sandbox.holding_slot():
        return validate_override(event_kind, source)


def _check_manageable(request: Request, org_id: int, actor: Actor) -> None:
    with unit_of_work(engine_of(request)) as s:
        _manageable(s, org_id, actor)


@router.get(
    "/orgs/{org_id}/notice-templates/{event_kind}",
    summary="组织自定义的通知措辞",
    response_model=TemplateOut,
    responses=responses(401, 403, 404, 422, 429),
)
def get_template(
    org_id: IdPath,
    event_kind: str,
    actor: Actor = Depends(managers),
    s: Session = Depends(reader),
) -> TemplateOut:
    """source 为空表示使用系统默认措辞；附示例数据渲染的预览。"""
    return _template_out(s, _manageable(s, org_id, actor), event_kind)


@router.put(
    "/orgs/{org_id}/notice-templates/{event_kind}",
    summary="保存组织自定义的通知措辞",
    response_model=TemplateOut,
    responses=responses(401, 403, 404, 409, 422, 429),
)
async def put_template(
    org_id: IdPath,
    event_kind: str,
    body: TemplateIn,
    request: Request,
    actor: Actor = Depends(managers),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """保存前用示例数据试渲染（安全沙箱、严格变量；限制输出长度、循环次数、调用次数与嵌套、渲染时间）；
    有错返回 422 并指出行号（details[0].line）。同时渲染的模板有上限，排队过久返回 429“服务器繁忙”。
    适用于本组织及全部下级；发送时出错会改用系统默认措辞，并记入 last_error、提醒保存者。"""
    await run_in_threadpool(_check_manageable, request, org_id, actor)
    preview = await _validated(event_kind, body.source)

    def change(s: Session, actor: Actor) -> TemplateOut:
        org = _manageable(s, org_id, actor)
        ns.save_template(s, org, event_kind, body.source, actor_id=actor.user_id)
        return _template_out(s, org, event_kind, preview)

    return await run_in_threadpool(write, request, actor, idem, 200, change)


@router.get(
    "/me/preferences", summary="我的通知偏好", response_model=PrefsOut, responses=responses(401)
)
def get_prefs(actor: Actor = Depends(authenticated), s: Session = Depends(reader)) -> PrefsOut:
    """站内消息总会送达；可以退订电子邮件。"""
    user = s.get(User, actor.user_id)
    return PrefsOut(
        email=actor.user_id not in ns.opted_out(s, [actor.user_id], "email"),
        address=user.email if user else None,
    )


@router.put(
    "/me/preferences",
    summary="设置我的通知偏好",
    response_model=PrefsOut,
    responses=responses(401, 422),
)
def put_prefs(body: PrefsIn, request: Request, who: Bearer = Depends(caller)) -> object:
    """关闭 email 即退订电子邮件通知；address 设置接收通知的邮箱。"""

    def change(s: Session, actor: Actor) -> PrefsOut:
        ns.set_opt_out(s, actor.user_id, "email", not body.email)
        user = s.get(User, actor.user_id)
        assert user is not None
        if body.address is not None:
            user.email = body.address
            s.add(user)
            s.flush()
        return PrefsOut(email=body.email, address=user.email)

    return write(request, who, None, 200, change)


@router.get(
    "/orgs/{org_id}/deliveries",
    summary="通知投递记录（含失败）",
    response_model=S.Page[DeliveryOut],
    responses=responses(401, 403, 404, 422),
)
def get_deliveries(
    org_id: IdPath,
    status: str | None = Query(
        None, pattern="^(pending|sent|failed)$", description="pending | sent | failed"
    ),
    actor: Actor = Depends(managers),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[DeliveryOut]:
    """本组织及下级相关通知的投递结果，最新在前；永久失败的投递在此可见并附原因。"""
    org = _manageable(s, org_id, actor)
    stmt = (
        select(Delivery, OutboxMessage.event_kind)
        .join(OutboxMessage, col(OutboxMessage.id) == col(Delivery.outbox_id))
        .join(Organisation, col(Organisation.id) == col(OutboxMessage.org_id))
        .where(subtree_filter(org.path))
    )
    if status:
        stmt = stmt.where(Delivery.status == status)
    total = s.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = s.execute(stmt.order_by(col(Delivery.id).desc()).limit(p.limit).offset(p.offset)).all()
    items = [
        DeliveryOut(
            id=d.id or 0,
            outbox_id=d.outbox_id,
            event_kind=kind,
            channel=d.channel,
            target=d.target if not d.target.startswith("user:") else "站内消息",
            message_id=d.message_id,
            status=d.status,
            attempts=d.attempts,
            last_error=d.last_error,
            next_attempt_at=d.next_attempt_at,
            sent_at=d.sent_at,
        )
        for d, kind in rows
    ]
    return S.Page(items=items, total=int(total), limit=p.limit, offset=p.offset)

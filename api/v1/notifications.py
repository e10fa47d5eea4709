"""The caller's in-app inbox (站内消息)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import authenticated
from states import inbox
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["消息"])


@router.get(
    "/notifications",
    summary="我的消息",
    response_model=S.NotificationPage,
    responses=responses(401, 422),
)
def list_notifications(
    unread: bool = Query(False, description="只看未读"),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.NotificationPage:
    """最新的在前，分页；unread 为未读总数。"""
    items, total, unread_count = inbox.list_for(
        s, actor.user_id, unread_only=unread, limit=p.limit, offset=p.offset
    )
    return S.NotificationPage(
        items=[S.NotificationOut.model_validate(i, from_attributes=True) for i in items],
        total=total,
        limit=p.limit,
        offset=p.offset,
        unread=unread_count,
    )


@router.post(
    "/notifications/{notification_id}/read",
    summary="标记消息已读",
    response_model=S.NotificationOut,
    responses=responses(401, 404, 409, 422),
)
def mark_read(
    notification_id: IdPath,
    request: Request,
    actor: Actor = Depends(authenticated),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """只能标记本人的消息；重复标记保留第一次的时间。"""

    def change(s: Session) -> S.NotificationOut:
        item = inbox.mark_read(s, user_id=actor.user_id, item_id=notification_id)
        return S.NotificationOut.model_validate(item, from_attributes=True)

    return write(request, actor, idem, 200, change)

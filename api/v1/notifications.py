"""The caller's in-app inbox (站内消息): the notice centre's JSON side.

`GET /notifications?status=all|unread&kind=…` pages the caller's notices newest first (default
`all`, as before; `unread=true` is kept as another way to say `status=unread`). Each notice
carries its `link` (the page it opens) and, once its work is done, `resolved_at`; a resolved
notice no longer counts as unread. `POST /notifications/read-all` marks every unread one read.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from states import inbox
from states.models import InboxItem
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["消息"])


def _out(item: InboxItem, link: str | None) -> S.NotificationOut:
    out = S.NotificationOut.model_validate(item, from_attributes=True)
    out.link = link
    return out


@router.get(
    "/notifications",
    summary="我的消息",
    response_model=S.NotificationPage,
    responses=responses(401, 422),
)
def list_notifications(
    status: Literal["all", "unread"] = Query(
        "all", description="all：全部（默认）；unread：未读（未读且事项未办结）"
    ),
    kind: str | None = Query(None, max_length=64, description="只看某类消息，如 overdue"),
    unread: bool = Query(False, description="同 status=unread（旧参数）"),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.NotificationPage:
    """最新的在前，分页；每条带 link（所涉页面）；unread 为未读总数。"""
    items, total, unread_count = inbox.list_for(
        s,
        actor.user_id,
        unread_only=unread or status == "unread",
        kind=kind or None,
        limit=p.limit,
        offset=p.offset,
    )
    links = inbox.links_for(s, items)
    return S.NotificationPage(
        items=[_out(i, links.get(i.id or 0)) for i in items],
        total=total,
        limit=p.limit,
        offset=p.offset,
        unread=unread_count,
    )


@router.post(
    "/notifications/read-all",
    summary="全部标为已读",
    response_model=S.ReadAllOut,
    responses=responses(401, 409, 422),
)
def read_all(
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """把本人全部未读消息标为已读（一条语句），返回标记的条数。"""

    def change(s: Session, actor: Actor) -> S.ReadAllOut:
        return S.ReadAllOut(count=inbox.mark_all_read(s, user_id=actor.user_id))

    return write(request, who, idem, 200, change)


@router.post(
    "/notifications/{notification_id}/read",
    summary="标记消息已读",
    response_model=S.NotificationOut,
    responses=responses(401, 404, 409, 422),
)
def mark_read(
    notification_id: IdPath,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """只能标记本人的消息；重复标记保留第一次的时间。"""

    def change(s: Session, actor: Actor) -> S.NotificationOut:
        item = inbox.mark_read(s, user_id=actor.user_id, item_id=notification_id)
        return _out(item, inbox.links_for(s, [item]).get(item.id or 0))

    return write(request, who, idem, 200, change)

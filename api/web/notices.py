"""消息中心 (`/notices`) and the bulletin page (`/bulletins/{id}`).

The centre pages all of my notices (20 a page, newest first) with filters 未读 / 全部 and by
kind; each notice opens its page (a button), can be marked read, and shows 已处理 once its work
was done (states/inbox.py resolves it). 全部标为已读 marks every unread one in one statement.
A bulletin notice opens the full stored bulletin, for whoever reaches its committee.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import IdPath
from api.web import session as web
from notifications.render import KIND_LABELS
from states import inbox
from states.db import read_session, unit_of_work
from states.errors import NotFound
from states.models import Bulletin, InboxItem, Organisation
from states.notice_settings import TEMPLATE_FAILED
from states.users import Actor

router = APIRouter(include_in_schema=False)

#: Notices per page of the centre.
PAGE = 20
#: Characters of a notice's body shown as its summary (the rest: 查看全文 on its page).
SUMMARY = 120
LABELS = {**KIND_LABELS, TEMPLATE_FAILED: "通知模板出错"}
#: The button that opens a notice's page, by where it leads.
OPEN_LABELS = {"/approvals": "去审批", "/bulletins/": "查看全文", "/runs/": "查看进度"}


@dataclass(frozen=True)
class NoticeView:
    item: InboxItem
    label: str
    link: str | None
    open_label: str
    state: str  # 未读 / 已读 / 已处理

    @property
    def unread(self) -> bool:
        return self.state == "未读"


def open_label(link: str | None) -> str:
    for prefix, label in OPEN_LABELS.items():
        if link and link.startswith(prefix):
            return label
    return "查看详情"


def views(session: Session, items: list[InboxItem]) -> list[NoticeView]:
    """What the desk and the centre show of each notice: its kind, link and state."""
    links = inbox.links_for(session, items)
    out = []
    for item in items:
        state = "已处理" if item.resolved_at else ("已读" if item.read_at else "未读")
        link = links.get(item.id or 0)
        label = LABELS.get(item.kind, item.kind)
        out.append(NoticeView(item, label, link, open_label(link), state))
    return out


@router.get("/notices")
def centre(
    request: Request,
    actor: Annotated[Actor, Depends(web.page_actor)],
    status: Annotated[str, Query(max_length=16)] = "all",
    kind: Annotated[str, Query(max_length=64)] = "",
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    status = status if status in ("all", "unread") else "all"
    unread_only, kind_filter = status == "unread", (kind or None)
    with read_session(request.app.state.engine) as s:
        items, total, unread = inbox.list_for(
            s,
            actor.user_id,
            unread_only=unread_only,
            kind=kind_filter,
            limit=PAGE,
            offset=(page - 1) * PAGE,
        )
        ctx: dict[str, Any] = {
            "notices": views(s, items),
            "total": total,
            "unread": unread,
            "status": status,
            "kind": kind_filter or "",
            "kinds": [(k, LABELS.get(k, k)) for k in inbox.kinds_of(s, actor.user_id)],
            "page": page,
            "pages": max(1, -(-total // PAGE)),
            "summary": SUMMARY,
        }
        return web.render(request, "notices.html", ctx)


def _back(fields: dict[str, str]) -> str:
    """Where to go after marking: the centre page the form was on, or the desk."""
    target = web.safe_next(fields.get("next"), "/#notices")
    return target if target.startswith(("/notices", "/#notices")) else "/#notices"


@router.post("/notices/read-all", dependencies=[Depends(web.csrf_protect)])
def read_all(
    request: Request,
    actor: Actor = Depends(web.page_actor),
    fields: dict[str, str] = Depends(web.form_fields),
) -> Response:
    """Mark every unread notice of mine read, in one statement."""
    with unit_of_work(request.app.state.engine) as s:
        n = inbox.mark_all_read(s, user_id=actor.user_id)
    web.flash(request, f"已将 {n} 条消息标为已读" if n else "没有未读消息", "info")
    return web.redirect(_back(fields))


@router.post("/notices/{notification_id}/read", dependencies=[Depends(web.csrf_protect)])
def mark_read(
    notification_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    fields: dict[str, str] = Depends(web.form_fields),
) -> Response:
    """Mark one of my notices read (someone else's looks missing: the 404 page)."""
    with unit_of_work(request.app.state.engine) as s:
        inbox.mark_read(s, user_id=actor.user_id, item_id=notification_id)
    web.flash(request, "已标记为已读", "info")
    return web.redirect(_back(fields))


@router.get("/bulletins/{bulletin_id}")
def bulletin_page(
    bulletin_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    """The full stored bulletin (简报) of a committee within my reach."""
    with read_session(request.app.state.engine) as s:
        bulletin = s.get(Bulletin, bulletin_id)
        org = s.get(Organisation, bulletin.org_id) if bulletin else None
        if bulletin is None or org is None or not actor.reaches(org.path):
            raise NotFound("简报不存在", details={"bulletin_id": bulletin_id})
        return web.render(request, "bulletin.html", {"bulletin": bulletin, "org": org})

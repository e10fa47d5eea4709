"""The in-app inbox (站内消息): one row per notice per user.

A notice about work someone owes resolves itself when the work is done (`resolved_at`): a
待审批 notice (`REQUEST_KINDS`, carrying `request_id`) once its request is decided, forwarded
or withdrawn (`resolve_request`), a reminder or 督办 notice once its run leaves the stage
(`resolve_run`). Each is one set-based UPDATE in the caller's transaction. A resolved notice
leaves the unread list and shows as 已处理 in the notice centre.

Every notice has a `link`, the page it opens (`links_for`, a local path such as `/runs/7`),
computed from what the row carries, so the stored body never ends in a raw URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, and_, func, or_, tuple_, update
from sqlmodel import Session, col, select

from states.db import insert_ignoring_conflicts
from states.errors import NotFound
from states.models import Bulletin, InboxItem, OutboxMessage
from states.timeutil import utcnow

#: Notices that wait on a request's decision (待审批): resolved once the request moves on.
REQUEST_KINDS = ("request_submitted", "extension_requested", "approval_sla")
#: Notices about a run's current stage (提醒、督办): resolved once the run leaves that stage.
STAGE_KINDS = ("reminder", "overdue")
#: 督办 notices: also resolved once an extension moves the run's deadline.
ESCALATION_KINDS = ("overdue",)
#: The notice centre's filters (`status`).
STATUSES = ("unread", "all")


def post(
    session: Session,
    *,
    user_ids: Iterable[int],
    kind: str,
    title: str,
    body: str = "",
    run_id: int | None = None,
    org_id: int | None = None,
    outbox_id: int | None = None,
    request_id: int | None = None,
    now: datetime | None = None,
) -> int:
    """Put one notice into each user's inbox; return how many rows were written."""
    rows = rows_for(
        user_ids,
        kind=kind,
        title=title,
        body=body,
        run_id=run_id,
        org_id=org_id,
        outbox_id=outbox_id,
        request_id=request_id,
        now=now or utcnow(),
    )
    insert_rows(session, rows)
    return len(rows)


def rows_for(
    user_ids: Iterable[int],
    *,
    kind: str,
    title: str,
    body: str,
    run_id: int | None,
    org_id: int | None,
    outbox_id: int | None,
    now: datetime,
    request_id: int | None = None,
    resolved_at: datetime | None = None,
) -> list[dict[str, Any]]:
    """Inbox rows for one notice, one per user (for `insert_rows`, which batches many).

    `resolved_at` is set for a notice whose work was already done when it was delivered."""
    return [
        {
            "user_id": uid,
            "kind": kind,
            "title": title[:200],
            "body": body[:4000],
            "run_id": run_id,
            "org_id": org_id,
            "outbox_id": outbox_id,
            "request_id": request_id,
            "resolved_at": resolved_at,
            "created_at": now,
        }
        for uid in sorted(set(user_ids))
    ]


def insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert inbox rows in one statement; a notice already in a user's inbox is skipped."""
    if rows:
        session.execute(insert_ignoring_conflicts(session, InboxItem), rows)


def _unread() -> Any:
    return col(InboxItem.read_at).is_(None) & col(InboxItem.resolved_at).is_(None)


def list_for(
    session: Session,
    user_id: int,
    *,
    unread_only: bool = False,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[InboxItem], int, int]:
    """Return (a page of notices newest first, total matching, total unread).

    Unread means neither read nor resolved (a notice whose work is done is not waiting)."""
    base = select(InboxItem).where(InboxItem.user_id == user_id)
    if unread_only:
        base = base.where(_unread())
    if kind:
        base = base.where(InboxItem.kind == kind)
    items = list(
        session.execute(
            base.order_by(col(InboxItem.id).desc()).limit(limit).offset(offset)
        ).scalars()
    )
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    return items, int(total), unread_count(session, user_id)


def unread_count(session: Session, user_id: int) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(InboxItem)
            .where(InboxItem.user_id == user_id, _unread())
        ).scalar_one()
    )


def kinds_of(session: Session, user_id: int) -> list[str]:
    """The kinds of notice this user has (for the centre's filter)."""
    return list(
        session.execute(
            select(InboxItem.kind)
            .where(InboxItem.user_id == user_id)
            .distinct()
            .order_by(InboxItem.kind)
        ).scalars()
    )


def mark_read(
    session: Session, *, user_id: int, item_id: int, now: datetime | None = None
) -> InboxItem:
    """Mark one of the user's notices read (reading twice keeps the first time)."""
    item = session.get(InboxItem, item_id)
    if item is None or item.user_id != user_id:
        raise NotFound("消息不存在", details={"notification_id": item_id})
    if item.read_at is None:
        session.execute(
            update(InboxItem)
            .where(col(InboxItem.id) == item_id, col(InboxItem.read_at).is_(None))
            .values(read_at=now or utcnow())
        )
        session.refresh(item)
    return item


def _count(result: Any) -> int:
    return int(result.rowcount) if isinstance(result, CursorResult) else 0


def mark_all_read(session: Session, *, user_id: int, now: datetime | None = None) -> int:
    """Mark every unread notice of the user read in one UPDATE; return how many."""
    result = session.execute(
        update(InboxItem)
        .where(col(InboxItem.user_id) == user_id, col(InboxItem.read_at).is_(None))
        .values(read_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return _count(result)


def resolve_request(session: Session, request_id: int | None, now: datetime | None = None) -> int:
    """The request moved on (decided, forwarded or withdrawn): its 待审批 notices are done."""
    result = session.execute(
        update(InboxItem)
        .where(
            col(InboxItem.request_id) == request_id,
            col(InboxItem.kind).in_(REQUEST_KINDS),
            col(InboxItem.resolved_at).is_(None),
        )
        .values(resolved_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return _count(result)


def resolve_run(session: Session, run_id: int | None, now: datetime | None = None) -> int:
    """The run left its stage: that stage's reminders and 督办 notices are done."""
    result = session.execute(
        update(InboxItem)
        .where(
            col(InboxItem.run_id) == run_id,
            col(InboxItem.kind).in_(STAGE_KINDS),
            col(InboxItem.resolved_at).is_(None),
        )
        .values(resolved_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    return _count(result)


def resolve_statement(
    *,
    now: Any,
    request_id: Any = None,
    run_id: Any = None,
    run_kinds: Sequence[str] = STAGE_KINDS,
) -> Any:
    """One UPDATE resolving a request's 待审批 notices and/or a run's `run_kinds` notices.

    `now`, `request_id` and `run_id` are values or bound parameters."""
    parts = []
    if request_id is not None:
        parts.append(
            and_(col(InboxItem.request_id) == request_id, col(InboxItem.kind).in_(REQUEST_KINDS))
        )
    if run_id is not None:
        parts.append(and_(col(InboxItem.run_id) == run_id, col(InboxItem.kind).in_(run_kinds)))
    return (
        update(InboxItem)
        .where(or_(*parts), col(InboxItem.resolved_at).is_(None))
        .values(resolved_at=now)
        .execution_options(synchronize_session=False)
    )


# --------------------------------------------------------------------------- links


def bulletin_key(dedupe_key: str) -> tuple[int, str] | None:
    """(campaign id, ISO week) of a bulletin notice's dedupe key `bulletin:C:ORG:PERIOD`."""
    parts = dedupe_key.split(":")
    if len(parts) != 4 or parts[0] != "bulletin" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[3]


def bulletin_ids(session: Session, keys: Sequence[tuple[int, int, str]]) -> dict[tuple, int]:
    """{(campaign id, org id, period): bulletin id} for the given keys, in one query."""
    if not keys:
        return {}
    rows = session.execute(
        select(Bulletin.campaign_id, Bulletin.org_id, Bulletin.period, Bulletin.id).where(
            tuple_(col(Bulletin.campaign_id), col(Bulletin.org_id), col(Bulletin.period)).in_(
                sorted(set(keys))
            )
        )
    ).all()
    return {(c, o, p): int(i) for c, o, p, i in rows}


def _outbox_of(session: Session, items: Sequence[InboxItem]) -> dict[int, tuple[str, Any]]:
    ids = sorted({i.outbox_id for i in items if i.outbox_id and not i.run_id})
    if not ids:
        return {}
    return {
        int(i): (key, payload)
        for i, key, payload in session.execute(
            select(OutboxMessage.id, OutboxMessage.dedupe_key, OutboxMessage.payload).where(
                col(OutboxMessage.id).in_(ids)
            )
        ).all()
    }


def links_for(session: Session, items: Sequence[InboxItem]) -> dict[int, str | None]:
    """The page each notice opens ({item id: local path or None}), in at most three queries."""
    outbox = _outbox_of(session, items)
    wanted: dict[int, tuple[int, int, str]] = {}
    for item in items:
        key = bulletin_key(outbox.get(item.outbox_id or 0, ("", None))[0])
        if item.kind == "bulletin" and key and item.org_id:
            wanted[item.id or 0] = (key[0], item.org_id, key[1])
    found = bulletin_ids(session, list(wanted.values()))
    out: dict[int, str | None] = {}
    for item in items:
        bulletin = found.get(wanted.get(item.id or 0, (0, 0, "")))
        payload = outbox.get(item.outbox_id or 0, ("", None))[1]
        out[item.id or 0] = link_path(item, bulletin, payload)
    return out


#: A message left in a public board's 意见箱 (`states.board.messages.NOTICE_KIND`).
BOARD_MESSAGE = "board_message"


def link_path(item: InboxItem, bulletin_id: int | None, payload: Any) -> str | None:
    """The local page of one notice: its approval, bulletin, run or campaign."""
    if item.kind in REQUEST_KINDS and item.request_id and item.resolved_at is None:
        return f"/approvals#request-{item.request_id}"
    if bulletin_id:
        return f"/bulletins/{bulletin_id}"
    page = payload.get("page") if isinstance(payload, dict) else None
    if isinstance(page, str) and page.startswith("/"):
        return page  # a finding's or a 通报's own page
    if item.kind == BOARD_MESSAGE and item.run_id:
        return f"/runs/{item.run_id}/board#messages"  # the 意见箱 list beside the board
    if item.run_id:
        return f"/runs/{item.run_id}"
    campaign = payload.get("campaign_id") if isinstance(payload, dict) else None
    if isinstance(campaign, int):
        return f"/campaigns/{campaign}"
    return None

"""The in-app inbox (站内消息): one row per notice per user."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from states.db import insert_ignoring_conflicts
from states.errors import NotFound
from states.models import InboxItem
from states.timeutil import utcnow


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
) -> list[dict[str, Any]]:
    """Inbox rows for one notice, one per user (for `insert_rows`, which batches many)."""
    return [
        {
            "user_id": uid,
            "kind": kind,
            "title": title[:200],
            "body": body[:4000],
            "run_id": run_id,
            "org_id": org_id,
            "outbox_id": outbox_id,
            "created_at": now,
        }
        for uid in sorted(set(user_ids))
    ]


def insert_rows(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert inbox rows in one statement; a notice already in a user's inbox is skipped."""
    if rows:
        session.execute(insert_ignoring_conflicts(session, InboxItem), rows)


def list_for(
    session: Session, user_id: int, *, unread_only: bool = False, limit: int = 50, offset: int = 0
) -> tuple[list[InboxItem], int, int]:
    """Return (a page of notices newest first, total matching, total unread)."""
    base = select(InboxItem).where(InboxItem.user_id == user_id)
    if unread_only:
        base = base.where(col(InboxItem.read_at).is_(None))
    items = list(
        session.execute(
            base.order_by(col(InboxItem.id).desc()).limit(limit).offset(offset)
        ).scalars()
    )
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    unread = session.execute(
        select(func.count())
        .select_from(InboxItem)
        .where(InboxItem.user_id == user_id, col(InboxItem.read_at).is_(None))
    ).scalar_one()
    return items, int(total), int(unread)


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

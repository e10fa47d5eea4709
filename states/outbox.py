"""Writing notices to the outbox, inside the transaction of the change that causes them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from states.models import OutboxMessage
from states.timeutil import utcnow


def enqueue(
    session: Session,
    *,
    event_kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    run_id: int | None = None,
    org_id: int | None = None,
) -> None:
    """Add one outbox row; its unique `dedupe_key` makes a repeated cause fail loudly."""
    now = utcnow()
    session.execute(
        insert(OutboxMessage).values(
            event_kind=event_kind,
            dedupe_key=dedupe_key,
            payload=payload,
            run_id=run_id,
            org_id=org_id,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )

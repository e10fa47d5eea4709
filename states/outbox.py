"""Writing notices to the outbox, inside the transaction of the change that causes them."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from states.models import OutboxMessage


def enqueue(
    session: Session,
    *,
    event_kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    run_id: int | None = None,
    org_id: int | None = None,
) -> OutboxMessage:
    """Add one outbox row; its unique `dedupe_key` makes a repeated cause fail loudly."""
    row = OutboxMessage(
        event_kind=event_kind,
        dedupe_key=dedupe_key,
        payload=payload,
        run_id=run_id,
        org_id=org_id,
    )
    session.add(row)
    session.flush()
    return row

"""Idempotency keys: the same key and body replays the first response for 24 hours.

A key is claimed in its own short transaction (`claim`), so a second request with the same key
sees it in flight at once. The response is recorded by `complete` inside the transaction of the
change itself: the change and its recorded response commit together or not at all. A request
that fails releases its key (`release`), so the client may retry it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from states.db import insert_ignoring_conflicts
from states.errors import Conflict, InvalidInput
from states.models import IdempotencyRecord
from states.timeutil import utcnow

KEEP = timedelta(hours=24)
#: A claim older than this whose request never finished (a crashed process) may be taken over.
STALE = timedelta(minutes=2)
MAX_KEY = 200


def request_hash(method: str, path: str, body: bytes) -> str:
    """Return the fingerprint of a request: method, path and body bytes."""
    h = hashlib.sha256()
    for part in (method.upper().encode(), b"\0", path.encode(), b"\0", body):
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Replay:
    """A response recorded earlier for the same key and body."""

    status: int
    body: Any


def _insert_ignore(session: Session, values: dict[str, Any]) -> bool:
    stmt = (
        insert_ignoring_conflicts(session, IdempotencyRecord)
        .values(**values)
        .returning(col(IdempotencyRecord.id))
    )
    # RETURNING, not rowcount: psycopg's rowcount is not reliable for this statement.
    return session.execute(stmt).first() is not None


def claim(
    session: Session, *, user_id: int, key: str, fingerprint: str, now: datetime | None = None
) -> Replay | None:
    """Claim `key` for this request; return a Replay if it already completed.

    Raises InvalidInput (422) if the key was used with another request, Conflict (409) if the
    first request with this key is still in flight. The caller commits right away.
    """
    now = now or utcnow()
    if not key or len(key) > MAX_KEY:
        raise InvalidInput(
            f"Idempotency-Key 须为 1 至 {MAX_KEY} 个字符", details=[{"field": "Idempotency-Key"}]
        )
    session.execute(delete(IdempotencyRecord).where(col(IdempotencyRecord.created_at) < now - KEEP))
    values = {
        "user_id": user_id,
        "key": key,
        "request_hash": fingerprint,
        "status": "in_flight",
        "created_at": now,
    }
    if _insert_ignore(session, values):
        return None
    rec = session.execute(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
        )
    ).scalar_one()
    if rec.request_hash != fingerprint:
        raise InvalidInput(
            "该 Idempotency-Key 已用于另一个请求，请换一个新的键",
            details=[{"field": "Idempotency-Key", "rule": "key_reused"}],
        )
    if rec.status == "done":
        return Replay(int(rec.response_status or 200), rec.response_body)
    if rec.created_at > now - STALE:
        raise Conflict(
            "使用同一 Idempotency-Key 的请求仍在处理中，请稍后重试",
            details={"rule": "idempotency_in_flight"},
        )
    session.execute(  # the first attempt died without finishing: take it over
        update(IdempotencyRecord).where(col(IdempotencyRecord.id) == rec.id).values(created_at=now)
    )
    return None


def complete(session: Session, *, user_id: int, key: str, status: int, body: Any) -> None:
    """Record the response, in the transaction of the change it answers."""
    session.execute(
        update(IdempotencyRecord)
        .where(col(IdempotencyRecord.user_id) == user_id, col(IdempotencyRecord.key) == key)
        .values(status="done", response_status=status, response_body=body)
    )


def release(session: Session, *, user_id: int, key: str) -> None:
    """Forget an in-flight claim whose request failed, so that a retry may run."""
    session.execute(
        delete(IdempotencyRecord).where(
            col(IdempotencyRecord.user_id) == user_id,
            col(IdempotencyRecord.key) == key,
            col(IdempotencyRecord.status) == "in_flight",
        )
    )

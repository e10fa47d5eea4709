"""The append-only, hash-chained audit log.

Each stream (`run:12`, `org`, `campaign:3`, `user`) is its own chain: an event's hash covers its
fields and the previous event's hash in the same stream, and `(stream, seq)` is unique, so two
writers can never fork a chain: the second one fails and its whole transaction rolls back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, update
from sqlmodel import Session, col, select

from states.models import AuditEvent, Run
from states.timeutil import utcnow

GENESIS = "0" * 64


def _canonical(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def event_hash(
    *,
    prev_hash: str,
    stream: str,
    seq: int,
    at: datetime,
    actor_id: int | None,
    action: str,
    run_id: int | None,
    data: dict[str, Any],
) -> str:
    """Return the SHA-256 of an event's fields chained to the previous hash."""
    body = _canonical(
        {
            "prev": prev_hash,
            "stream": stream,
            "seq": seq,
            "at": at.strftime("%Y-%m-%dT%H:%M:%S.%f"),
            "actor": actor_id,
            "action": action,
            "run": run_id,
            "data": data,
        }
    )
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def hash_of(ev: AuditEvent, **changes: Any) -> str:
    """Return the hash a stored event should carry (with `changes` applied to its fields)."""
    fields = {
        "prev_hash": ev.prev_hash,
        "stream": ev.stream,
        "seq": ev.seq,
        "at": ev.at,
        "actor_id": ev.actor_id,
        "action": ev.action,
        "run_id": ev.run_id,
        "data": ev.data,
    }
    return event_hash(**{**fields, **changes})


def chain_rows(
    head: tuple[int, str | None],
    *,
    stream: str,
    events: Sequence[tuple[str, int | None, dict[str, Any]]],
    run_id: int | None = None,
    at: datetime | None = None,
) -> list[dict[str, Any]]:
    """The rows of `events` (action, actor_id, data) chained after `head` (last seq, hash)."""
    seq, prev = head[0], head[1] or GENESIS
    at = at or utcnow()
    rows = []
    for action, actor_id, data in events:
        seq += 1
        fields: dict[str, Any] = {
            "prev_hash": prev,
            "stream": stream,
            "seq": seq,
            "at": at,
            "actor_id": actor_id,
            "action": action,
            "run_id": run_id,
            "data": json.loads(_canonical(data)),
        }
        prev = event_hash(**fields)
        rows.append({**fields, "hash": prev})
    return rows


def _head(session: Session, stream: str) -> tuple[int, str | None]:
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash)
        .where(AuditEvent.stream == stream)
        .order_by(col(AuditEvent.seq).desc())
        .limit(1)
    ).first()
    return (int(last[0]), str(last[1])) if last else (0, None)


def _run_of(stream: str) -> int | None:
    return int(stream[4:]) if stream.startswith("run:") else None


def _move_run_head(session: Session, stream: str, row: dict[str, Any]) -> None:
    """A run's stream keeps its head on the run's row (see `states.models.Run.audit_seq`)."""
    run_id = _run_of(stream)
    if run_id is not None:
        session.execute(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(audit_seq=row["seq"], audit_hash=row["hash"])
            .execution_options(synchronize_session=False)
        )


def append(
    session: Session,
    *,
    stream: str,
    action: str,
    actor_id: int | None,
    data: dict[str, Any],
    run_id: int | None = None,
) -> str:
    """Append one event to `stream` in the caller's transaction; return its hash."""
    (row,) = chain_rows(
        _head(session, stream), stream=stream, events=[(action, actor_id, data)], run_id=run_id
    )
    # A Core insert: the log is written, never read back into this session's objects.
    session.execute(insert(AuditEvent).values(**row))
    _move_run_head(session, stream, row)
    return str(row["hash"])


def append_many(
    session: Session,
    *,
    stream: str,
    events: Sequence[tuple[str, int | None, dict[str, Any]]],
    run_id: int | None = None,
) -> None:
    """Append (action, actor_id, data) events to `stream` in order: one read, one insert."""
    if not events:
        return
    rows = chain_rows(_head(session, stream), stream=stream, events=events, run_id=run_id)
    session.execute(insert(AuditEvent), rows)
    _move_run_head(session, stream, rows[-1])


@dataclass(frozen=True)
class BrokenLink:
    """The first event whose chain does not hold, and why."""

    event_id: int
    stream: str
    seq: int
    reason: str


@dataclass(frozen=True)
class VerifyReport:
    """What `verify` checked and the first broken link, if any.

    `tampered` lists the evidence records whose contents no longer hash to what their latest
    create/amend/void event says (an edit behind the application's back).
    """

    events: int
    streams: int
    broken: BrokenLink | None
    records: int = 0
    tampered: tuple[int, ...] = ()

    @property
    def ok(self) -> bool:
        return self.broken is None


def verify(session: Session, *, batch: int = 5000) -> VerifyReport:
    """Walk every stream in order; return the first event (lowest id) whose link is broken.

    Then compare every evidence record with the content hash of its latest audit event; if the
    chains hold, the first record that differs is reported as the broken link.
    """
    checked, first = _walk(session, batch)
    total_streams = session.execute(
        select(func.count(func.distinct(AuditEvent.stream)))
    ).scalar_one()
    records, tampered, where = _evidence_check(session, batch)
    if first is None and tampered:
        ev_id, stream, seq = where
        first = BrokenLink(ev_id, stream, seq, f"材料 #{tampered[0]} 的内容与审计记录不符")
    return VerifyReport(checked, int(total_streams), first, records, tuple(tampered))


def _walk(session: Session, batch: int) -> tuple[int, BrokenLink | None]:
    heads: dict[str, tuple[int, str]] = {}
    checked = 0
    first: BrokenLink | None = None
    last_id = 0
    while True:
        rows = (
            session.execute(
                select(AuditEvent)
                .where(col(AuditEvent.id) > last_id)
                .order_by(col(AuditEvent.id))
                .limit(batch)
                .execution_options(populate_existing=True)  # never trust rows cached in session
            )
            .scalars()
            .all()
        )
        if not rows:
            return checked, first
        for ev in rows:
            last_id = ev.id or 0
            checked += 1
            if first is not None:
                continue
            seq, prev = heads.get(ev.stream, (0, GENESIS))
            reason = None
            if ev.seq != seq + 1:
                reason = f"序号不连续：应为 {seq + 1}，实为 {ev.seq}"
            elif ev.prev_hash != prev:
                reason = "前一事件的哈希不符（上一条被改动或删除）"
            elif hash_of(ev) != ev.hash:
                reason = "内容与哈希不符（本条被改动）"
            if reason:
                first = BrokenLink(ev.id or 0, ev.stream, ev.seq, reason)
            heads[ev.stream] = (ev.seq, ev.hash)


def _latest_hashes(session: Session) -> dict[int, tuple[str, int, str, int]]:
    """evidence id -> (sha256, event id, stream, seq) of its latest hashed event: one query."""
    from states.evidence.hashing import HASHED_ACTIONS

    eid = AuditEvent.data["evidence_id"].as_integer()
    latest = (
        select(func.max(AuditEvent.id))
        .where(col(AuditEvent.action).in_(HASHED_ACTIONS))
        .group_by(eid)
    )
    rows = session.execute(
        select(AuditEvent.id, AuditEvent.stream, AuditEvent.seq, AuditEvent.data).where(
            col(AuditEvent.id).in_(latest)
        )
    ).all()
    out: dict[int, tuple[str, int, str, int]] = {}
    for event_id, stream, seq, data in rows:
        if isinstance(data, dict) and data.get("sha256") and data.get("evidence_id"):
            out[int(data["evidence_id"])] = (str(data["sha256"]), event_id, stream, seq)
    return out


def _evidence_check(session: Session, batch: int) -> tuple[int, list[int], tuple[int, str, int]]:
    """One pass over the evidence table against the latest hashes; the tampered ids in order."""
    from states.evidence.hashing import canonical
    from states.models import Evidence

    expected = _latest_hashes(session)
    tampered: list[int] = []
    where: tuple[int, str, int] = (0, "", 0)
    checked, last_id = 0, 0
    table = Evidence.__table__  # type: ignore[attr-defined]
    cols = [table.c[n] for n in ("id", "kind", "subject", "data", "status", "version")]
    while True:
        rows = session.execute(
            select(*cols).where(table.c.id > last_id).order_by(table.c.id).limit(batch)
        ).all()
        if not rows:
            return checked, tampered, where
        for ev_id, kind, subject, data, status, version in rows:
            last_id = ev_id
            want = expected.get(ev_id)
            if want is None:
                continue  # recorded before content hashes were kept
            checked += 1
            text = canonical(kind, subject, data, status, version)
            if hashlib.sha256(text.encode("utf-8")).hexdigest() != want[0]:
                if not tampered:
                    where = want[1:]
                tampered.append(ev_id)

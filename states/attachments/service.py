"""Attachments of evidence records: reach, who may attach, the limits, recording and reading.

A record's files are seen by whoever sees the record (its organisation is in the caller's
reach; otherwise they look missing: NotFound). Files are added by whoever may record for the
organisation that wrote the record: its secretary, committee or admin, or a committee member or
admin above it (as for recording). A voided record takes no more files; at most
`MAX_PER_RECORD` per record (Conflict); the same bytes on the same record are one attachment.
Each addition is audited in the stream of the run the record was first recorded in (else `org`),
in the transaction that inserts the row.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, col, select

from states import audit
from states.attachments.sniff import FileType, safe_filename, sniff
from states.attachments.storage import Storage, put_bytes
from states.attachments.thumbs import thumbnail
from states.errors import Conflict, Forbidden, InvalidInput, NotFound, TooLarge
from states.models import Attachment, Evidence, Organisation, Role
from states.users import Actor

MAX_BYTES = 10 * 1024 * 1024
MAX_PER_RECORD = 20
ATTACH_ROLES = frozenset({Role.SECRETARY, Role.COMMITTEE, Role.ADMIN})
ABOVE_ROLES = frozenset({Role.COMMITTEE, Role.ADMIN})


def too_large(filename: str | None = None) -> TooLarge:
    name = f"「{filename}」" if filename else ""
    return TooLarge(
        f"文件{name}超过 {MAX_BYTES // (1024 * 1024)} MB 的上限",
        details=[{"field": "file", "filename": filename, "max_bytes": MAX_BYTES}],
    )


@dataclass(frozen=True)
class Received:
    """An uploaded file, complete in a temp file next to the storage, hashed while written."""

    path: Path
    filename: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Stored:
    """A received file checked, thumbnailed and put into storage, ready to be recorded."""

    sha256: str
    size: int
    mime: str
    filename: str
    thumb_sha256: str | None


def record_in_reach(session: Session, evidence_id: int, actor: Actor) -> tuple[Evidence, str]:
    """Return the record and its organisation's path; NotFound when missing or out of reach."""
    row = session.execute(
        select(Evidence, Organisation.path)
        .join(Organisation, col(Organisation.id) == col(Evidence.org_id))
        .where(Evidence.id == evidence_id)
    ).first()
    if row is None or not actor.reaches(row[1]):
        raise NotFound("材料不存在", details={"evidence_id": evidence_id})
    return row[0], row[1]


def may_attach(session: Session, ev: Evidence, org_path: str, actor: Actor) -> bool:
    """Whether the actor may add files to the record (acting for the organisation that wrote it)."""
    writer_id, writer_path = ev.org_id, org_path
    if ev.recorder_org_id and ev.recorder_org_id != ev.org_id:
        writer = session.get(Organisation, ev.recorder_org_id)
        if writer is not None:
            writer_id, writer_path = writer.id or 0, writer.path
    return actor.holds_on(writer_id, ATTACH_ROLES) or actor.holds_above(writer_path, ABOVE_ROLES)


def count_of(session: Session, evidence_id: int) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(Attachment)
            .where(Attachment.evidence_id == evidence_id)
        ).scalar_one()
    )


def check_may_attach(session: Session, evidence_id: int, actor: Actor) -> Evidence:
    """Raise unless the actor may add a file to the record now (reach, role, state, count)."""
    ev, path = record_in_reach(session, evidence_id, actor)
    if not may_attach(session, ev, path, actor):
        raise Forbidden("只有录入该材料的组织的书记、委员或上级党组织委员可以上传附件")
    if ev.status != "active":
        raise Conflict("该材料已作废，不能再上传附件", details={"evidence_id": evidence_id})
    if count_of(session, evidence_id) >= MAX_PER_RECORD:
        raise Conflict(
            f"每项材料最多 {MAX_PER_RECORD} 个附件，已达上限",
            details={"evidence_id": evidence_id, "max_files": MAX_PER_RECORD},
        )
    return ev


def store(storage: Storage, received: Received) -> Stored:
    """Sniff, thumbnail (images) and store a received file (call in a worker thread).

    InvalidInput (422) names the file when its bytes are not an accepted type; the temp file is
    removed in every case."""
    try:
        if received.size > MAX_BYTES:
            raise too_large(received.filename)
        if received.size == 0:
            raise InvalidInput(f"文件「{received.filename}」是空文件", details=[{"field": "file"}])
        found = sniff(received.path, received.filename)
        thumb = _thumbnail(storage, received, found)
        storage.put(received.path, received.sha256)
    finally:
        received.path.unlink(missing_ok=True)
    name = safe_filename(received.filename, found)
    return Stored(received.sha256, received.size, found.mime, name, thumb)


def _thumbnail(storage: Storage, received: Received, found: FileType) -> str | None:
    if not found.is_image:
        return None
    data, _ = thumbnail(received.path, received.filename)
    sha = hashlib.sha256(data).hexdigest()
    put_bytes(storage, data, sha)
    return sha


def attach(
    session: Session, *, evidence_id: int, actor: Actor, stored: Stored
) -> tuple[Attachment, bool]:
    """Record a stored file on the record; return it and whether it is new (same bytes on
    the same record: the existing attachment, nothing written)."""
    ev = check_may_attach(session, evidence_id, actor)
    session.execute(  # serialise concurrent uploads to one record (row lock on PostgreSQL)
        select(Evidence.id).where(Evidence.id == evidence_id).with_for_update()
    )
    existing = session.execute(
        select(Attachment).where(
            Attachment.evidence_id == evidence_id, Attachment.sha256 == stored.sha256
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing, False
    if count_of(session, evidence_id) >= MAX_PER_RECORD:
        raise Conflict(f"每项材料最多 {MAX_PER_RECORD} 个附件，已达上限")
    row = Attachment(
        evidence_id=evidence_id,
        sha256=stored.sha256,
        size=stored.size,
        content_type=stored.mime,
        filename=stored.filename,
        thumb_sha256=stored.thumb_sha256,
        created_by=actor.user_id,
    )
    session.add(row)
    session.flush()
    _audit(session, ev, row, actor)
    return row, True


def _audit(session: Session, ev: Evidence, row: Attachment, actor: Actor) -> None:
    audit.append(
        session,
        stream=f"run:{ev.run_id}" if ev.run_id else "org",
        action="attachment.added",
        actor_id=actor.user_id,
        run_id=ev.run_id,
        data={
            "evidence_id": ev.id,
            "attachment_id": row.id,
            "filename": row.filename,
            "content_type": row.content_type,
            "size": row.size,
            "sha256": row.sha256,
        },
    )


def attachment_in_reach(session: Session, attachment_id: int, actor: Actor) -> Attachment:
    """Return the attachment when its record is in the actor's reach; NotFound otherwise."""
    row = session.execute(
        select(Attachment, Organisation.path)
        .join(Evidence, col(Evidence.id) == col(Attachment.evidence_id))
        .join(Organisation, col(Organisation.id) == col(Evidence.org_id))
        .where(Attachment.id == attachment_id)
    ).first()
    if row is None or not actor.reaches(row[1]):
        raise NotFound("附件不存在", details={"attachment_id": attachment_id})
    return row[0]


def attachments_of(session: Session, evidence_ids: Sequence[int]) -> dict[int, list[Attachment]]:
    """The attachments of these records (the caller checked reach), oldest first, by record."""
    out: dict[int, list[Attachment]] = {}
    if not evidence_ids:
        return out
    rows = session.execute(
        select(Attachment)
        .where(col(Attachment.evidence_id).in_(sorted(set(evidence_ids))))
        .order_by(col(Attachment.id))
    ).scalars()
    for a in rows:
        out.setdefault(a.evidence_id, []).append(a)
    return out

"""Correcting a record: void it with a reason, or amend its contents.

Either is allowed to the person who recorded it, or to a committee, organiser or admin above
its organisation, while every stage that uses it is still open (the run is at that stage and
not done): a record a finished stage relied on stays as it was. A voided record stops counting;
an amended one keeps its id and links, its old contents go to `EvidenceRevision`. Each change
writes an audit event, with the new content hash, to every run that uses the record.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from states import audit
from states.catalog import DONE
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.evidence.hashing import content_hash
from states.evidence.roster import apply_roster, load_roster, needs_roster
from states.evidence.validation import validate_evidence
from states.machines import stage_label
from states.models import Evidence, EvidenceLink, EvidenceRevision, Organisation, Role
from states.run_core import RunContext, flush, load_run
from states.timeutil import utcnow
from states.users import Actor

#: Who above the record's organisation may correct it.
CORRECTOR_ROLES = frozenset({Role.COMMITTEE, Role.ORGANISER, Role.ADMIN})
MAX_REASON = 500


def load_record(
    session: Session, evidence_id: int, actor: Actor, *, lock: bool = False
) -> tuple[Evidence, Organisation]:
    """The record and its organisation; NotFound if missing or outside the actor's reach."""
    stmt = (
        select(Evidence, Organisation)
        .join(Organisation, col(Organisation.id) == col(Evidence.org_id))
        .where(Evidence.id == evidence_id)
        .execution_options(populate_existing=True)
    )
    if lock:
        stmt = stmt.with_for_update(of=Evidence)
    row = session.execute(stmt).first()
    if row is None or not actor.reaches(row[1].path):
        raise NotFound("材料不存在", details={"evidence_id": evidence_id})
    return row[0], row[1]


def may_correct(ev: Evidence, org: Organisation, actor: Actor) -> bool:
    """Whether `actor` recorded the record or holds a correcting role above its organisation."""
    return ev.recorded_by == actor.user_id or actor.holds_above(org.path, CORRECTOR_ROLES)


def uses(session: Session, ev: Evidence) -> list[RunContext]:
    """The runs that use the record (each at most once), after checking every use is open."""
    links = session.execute(
        select(EvidenceLink).where(EvidenceLink.evidence_id == ev.id).order_by(col(EvidenceLink.id))
    ).scalars()
    out: dict[int, RunContext] = {}
    for ln in links:
        ctx = out.get(ln.run_id) or load_run(session, ln.run_id, None, lock=True)
        if ctx.run.stage == DONE or ctx.run.stage != ln.stage:
            raise Conflict(
                f"该材料已用于「{ctx.campaign.name}」的「{stage_label(ctx.tpl, ln.stage)}」阶段，"
                "该阶段已结束，不能再更正",
                details={"rule": "use_closed", "run_id": ln.run_id, "stage": ln.stage},
            )
        out[ln.run_id] = ctx
    return list(out.values())


def _checked(session: Session, evidence_id: int, actor: Actor) -> tuple[Evidence, list[RunContext]]:
    ev, org = load_record(session, evidence_id, actor, lock=True)
    if not may_correct(ev, org, actor):
        raise Forbidden(
            "只有录入人或上级党组织委员可以更正此材料", details={"rule": "not_recorder"}
        )
    if ev.status != "active":
        raise Conflict("该材料已作废", details={"rule": "void"})
    return ev, uses(session, ev)


def _log(
    session: Session,
    contexts: list[RunContext],
    ev: Evidence,
    action: str,
    actor: Actor,
    **data: Any,
) -> None:
    body = {"evidence_id": ev.id, "kind": ev.kind, "subject": ev.subject, "version": ev.version}
    body |= {"status": ev.status, "sha256": content_hash(ev), **data}
    streams: list[tuple[str, int | None, str | None]] = [
        (f"run:{c.run.id}", c.run.id, c.org.code) for c in contexts
    ]
    for stream, run_id, code in streams or [(f"evidence:{ev.id}", None, None)]:
        audit.append(
            session,
            stream=stream,
            action=action,
            actor_id=actor.user_id,
            run_id=run_id,
            data={"org": code, **body},
        )


def _reason(reason: str | None, *, required: bool) -> str | None:
    text = (reason or "").strip()
    if required and not text:
        raise InvalidInput("作废须填写理由", details=[{"field": "reason"}])
    if len(text) > MAX_REASON:
        raise InvalidInput(f"理由最多 {MAX_REASON} 字", details=[{"field": "reason"}])
    return text or None


def void(session: Session, *, evidence_id: int, actor: Actor, reason: str) -> Evidence:
    """Void the record with a reason: it stops counting for every stage that uses it."""
    text = _reason(reason, required=True)
    ev, contexts = _checked(session, evidence_id, actor)
    ev.status, ev.voided_at, ev.voided_by, ev.void_reason = "void", utcnow(), actor.user_id, text
    session.add(ev)
    flush(session)
    _log(session, contexts, ev, "evidence.voided", actor, reason=text)
    return ev


def _template_of(session: Session, ev: Evidence, contexts: list[RunContext]) -> RunContext:
    if contexts:
        return contexts[0]
    return load_run(session, ev.run_id or 0, None)


def amend(
    session: Session,
    *,
    evidence_id: int,
    actor: Actor,
    data: dict[str, Any],
    reason: str | None = None,
) -> Evidence:
    """Replace the record's contents; the old ones are kept as a revision and in the history."""
    text = _reason(reason, required=False)
    ev, contexts = _checked(session, evidence_id, actor)
    ctx = _template_of(session, ev, contexts)
    clean, subject = validate_evidence(ctx.tpl, ev.kind, data)
    if needs_roster(ev.kind):
        clean = apply_roster(ev.kind, clean, load_roster(session, ev.org_id))
    if clean == ev.data and subject == ev.subject:
        raise InvalidInput("内容没有变化", details=[{"field": "data"}])
    before = {"subject": ev.subject, "data": ev.data}
    session.add(
        EvidenceRevision(
            evidence_id=ev.id or 0,
            version=ev.version,
            subject=ev.subject,
            data=ev.data,
            replaced_by=actor.user_id,
            reason=text,
        )
    )
    ev.data, ev.subject, ev.version, ev.amended_at = clean, subject, ev.version + 1, utcnow()
    session.add(ev)
    flush(session)
    after = {"subject": ev.subject, "data": ev.data}
    _log(session, contexts, ev, "evidence.amended", actor, reason=text, before=before, after=after)
    return ev

"""Recording evidence once for the organisation and linking it to (run, stage) uses.

A record belongs to the run's organisation (`Evidence.org_id`); recording it also links it to
the run's current stage, and `link` lets the same record count for another run's stage (another
campaign) without typing it again. Every write runs in the caller's transaction with its audit
event (carrying the record's content hash, `states.evidence.hashing`): all or nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlmodel import Session, col, select

from states.catalog import DONE, Stage
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.evidence.hashing import content_hash
from states.evidence.roster import Roster, apply_roster, load_roster, needs_roster
from states.evidence.validation import validate_evidence
from states.machines import stage_label
from states.models import Evidence, EvidenceLink, Organisation, Role
from states.orgs import ancestors
from states.run_core import SUPERIOR_ROLES, RunContext, acting_as, finish, flush, load_run, log
from states.users import Actor

#: Who may record a grade or commendation (`decision`): a committee above, like `review`.
DECISION_ROLES = frozenset({Role.COMMITTEE, Role.ORGANISER, Role.ADMIN})
#: Kinds written by the superior organisation, never by the branch itself.
FROM_ABOVE = {"review": SUPERIOR_ROLES, "decision": DECISION_ROLES}
FROM_ABOVE_MESSAGES = {
    "review": "点评须由上级党组织委员录入",
    "decision": "评定等次与表彰须由上级党组织决定，本支部可录入自评（self_assessment）",
}
MAX_BATCH = 500


def accepted_kinds(stage: Stage) -> list[str]:
    """The kinds a stage records: its template's list, and a self-assessment beside a decision."""
    kinds = list(stage.evidence)
    if "decision" in kinds and "self_assessment" not in kinds:
        kinds.append("self_assessment")
    return kinds


def _open_stage(ctx: RunContext) -> Stage:
    if ctx.run.stage == DONE:
        raise Conflict("该创建进度已完成，不能再补录材料", details={"rule": "done"})
    return ctx.tpl.stage(ctx.run.stage)


def _check_kind(stage: Stage, kind: str) -> None:
    allowed = accepted_kinds(stage)
    if kind not in allowed:
        raise InvalidInput(
            f"「{stage.name}」阶段不收 {kind} 类材料（可录：{'、'.join(allowed) or '无'}）",
            details=[{"field": "kind", "message": "本阶段不收此类材料"}],
        )


def _superior_org(
    session: Session, ctx: RunContext, actor: Actor, roles: frozenset[Role]
) -> int | None:
    for anc in ancestors(session, ctx.org):
        if actor.holds_on(anc.id or 0, roles):
            return anc.id
    return None


def recorder(session: Session, ctx: RunContext, actor: Actor, kind: str) -> tuple[bool, int | None]:
    """Return (on behalf?, recording organisation); Forbidden if `actor` may not record `kind`."""
    roles = FROM_ABOVE.get(kind)
    if roles is None:
        return acting_as(ctx, actor), ctx.org.id or 0
    if not actor.holds_above(ctx.org.path, roles):
        raise Forbidden(FROM_ABOVE_MESSAGES[kind], details={"rule": "decided_above"})
    if kind == "decision" and actor.holds_on(ctx.org.id or 0, frozenset({Role.SECRETARY})):
        raise Forbidden("不能为本人任书记的支部评定等次", details={"rule": "own_branch"})
    return False, _superior_org(session, ctx, actor, roles)


def _build(
    session: Session,
    ctx: RunContext,
    actor: Actor,
    kind: str,
    data: dict[str, Any],
    roster: Roster,
) -> Evidence:
    """Validate one item and return the unsaved record (nothing is written)."""
    stage = _open_stage(ctx)
    _check_kind(stage, kind)
    clean, subject = validate_evidence(ctx.tpl, kind, data)
    clean = apply_roster(kind, clean, roster)
    on_behalf, recorder_org = recorder(session, ctx, actor, kind)
    return Evidence(
        org_id=ctx.org.id or 0,
        run_id=ctx.run.id or 0,
        stage=stage.id,
        kind=kind,
        subject=subject,
        data=clean,
        recorded_by=actor.user_id,
        recorder_org_id=recorder_org,
        on_behalf=on_behalf,
    )


def _recorded_event(ctx: RunContext, ev: Evidence) -> dict[str, Any]:
    return {
        "org": ctx.org.code,
        "evidence_id": ev.id,
        "stage": ev.stage,
        "kind": ev.kind,
        "subject": ev.subject,
        "on_behalf": ev.on_behalf,
        "version": ev.version,
        "sha256": content_hash(ev),
    }


def _save(session: Session, ctx: RunContext, actor: Actor, evs: list[Evidence]) -> None:
    """Insert the records, their links to the current stage, and their audit events."""
    session.add_all(evs)
    flush(session)
    links = [
        EvidenceLink(
            evidence_id=ev.id or 0,
            run_id=ctx.run.id or 0,
            stage=ctx.run.stage,
            linked_by=actor.user_id,
        )
        for ev in evs
    ]
    session.add_all(links)
    flush(session)
    for ev in evs:  # chained after the head the locked run holds, sent with its move
        ctx.writes.events.append(("evidence.recorded", actor.user_id, _recorded_event(ctx, ev)))
    finish(session, ctx)


def record(
    session: Session, *, run_id: int, actor: Actor, kind: str, data: dict[str, Any]
) -> Evidence:
    """Record one piece of evidence for the organisation and link it to the run's stage."""
    ctx = load_run(session, run_id, actor, lock=True)
    _open_stage(ctx)
    roster = load_roster(session, ctx.org.id or 0) if needs_roster(kind) else {}
    ev = _build(session, ctx, actor, kind, data, roster)
    _save(session, ctx, actor, [ev])
    return ev


def _item_errors(i: int, exc: InvalidInput) -> list[dict[str, Any]]:
    details = exc.details if isinstance(exc.details, list) else []
    out = [
        {"item": i, "field": d.get("field"), "message": d.get("message") or exc.message}
        for d in details
        if isinstance(d, dict)
    ]
    return out or [{"item": i, "field": None, "message": exc.message}]


def _duplicate(kind: str, ev: Evidence, seen: set[str]) -> InvalidInput | None:
    if kind != "commitment" or not ev.subject:
        return None
    if ev.subject in seen:
        return InvalidInput(
            "同一承诺人在本批中出现多次", details=[{"field": "member_id", "message": "重复"}]
        )
    seen.add(ev.subject)
    return None


def record_batch(
    session: Session,
    *,
    run_id: int,
    actor: Actor,
    items: Sequence[tuple[str, dict[str, Any]]],
) -> list[Evidence]:
    """Record several items at once, all or nothing.

    Every item is checked first; if any is wrong, InvalidInput lists each bad one as
    {"item": index, "field": …, "message": …} and nothing is written. A refusal of the caller
    (Forbidden, a finished run) refuses the whole batch.
    """
    if not items:
        raise InvalidInput("请至少提交一项材料", details=[{"field": "items"}])
    if len(items) > MAX_BATCH:
        raise InvalidInput(f"一次最多提交 {MAX_BATCH} 项材料", details=[{"field": "items"}])
    ctx = load_run(session, run_id, actor, lock=True)
    _open_stage(ctx)
    kinds = {kind for kind, _ in items}
    roster = load_roster(session, ctx.org.id or 0) if any(map(needs_roster, kinds)) else {}
    evs: list[Evidence] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, (kind, data) in enumerate(items):
        try:
            ev = _build(session, ctx, actor, kind, data, roster)
        except InvalidInput as exc:
            errors += _item_errors(i, exc)
            continue
        dup = _duplicate(kind, ev, seen)
        if dup is not None:
            errors += _item_errors(i, dup)
        evs.append(ev)
    if errors:
        bad = sorted({e["item"] for e in errors})
        listed = "、".join(f"第 {i + 1} 项" for i in bad[:10])
        raise InvalidInput(f"有 {len(bad)} 项材料有误（{listed}），均未保存", details=errors)
    _save(session, ctx, actor, evs)
    return evs


def load_own_record(session: Session, ctx: RunContext, actor: Actor, evidence_id: int) -> Evidence:
    """The record, if it is within the actor's reach and belongs to the run's organisation."""
    ev = session.get(Evidence, evidence_id)
    org = session.get(Organisation, ev.org_id) if ev is not None else None
    if ev is None or org is None or not actor.reaches(org.path):
        raise NotFound("材料不存在", details={"evidence_id": evidence_id})
    if ev.org_id != ctx.org.id:
        raise Conflict(
            f"该材料属于「{org.name}」，不能用于「{ctx.org.name}」",
            details={"rule": "other_organisation"},
        )
    return ev


def _link_row(session: Session, run_id: int, stage: str, evidence_id: int) -> EvidenceLink | None:
    return session.execute(
        select(EvidenceLink).where(
            EvidenceLink.evidence_id == evidence_id,
            EvidenceLink.run_id == run_id,
            EvidenceLink.stage == stage,
        )
    ).scalar_one_or_none()


def _link_context(
    session: Session, run_id: int, actor: Actor, evidence_id: int
) -> tuple[RunContext, Stage, Evidence]:
    ctx = load_run(session, run_id, actor, lock=True)
    ev = load_own_record(session, ctx, actor, evidence_id)
    stage = _open_stage(ctx)
    recorder(session, ctx, actor, ev.kind)
    return ctx, stage, ev


def link(session: Session, *, run_id: int, actor: Actor, evidence_id: int) -> EvidenceLink:
    """Let an existing record of the organisation count for the run's current stage too."""
    ctx, stage, ev = _link_context(session, run_id, actor, evidence_id)
    if ev.status != "active":
        raise Conflict("该材料已作废，不能再使用", details={"rule": "void"})
    if ev.kind not in accepted_kinds(stage):
        raise Conflict(
            f"「{stage.name}」阶段不收此类材料（{ev.kind}）", details={"rule": "kind_not_accepted"}
        )
    if _link_row(session, ctx.run.id or 0, stage.id, ev.id or 0) is not None:
        raise Conflict("该材料已用于本阶段", details={"rule": "already_linked"})
    row = EvidenceLink(
        evidence_id=ev.id or 0, run_id=ctx.run.id or 0, stage=stage.id, linked_by=actor.user_id
    )
    session.add(row)
    flush(session)
    _log_link(session, ctx, actor, "evidence.linked", ev)
    return row


def unlink(session: Session, *, run_id: int, actor: Actor, evidence_id: int) -> Evidence:
    """Stop a record counting for the run's current stage (the record itself stays)."""
    ctx, stage, ev = _link_context(session, run_id, actor, evidence_id)
    row = _link_row(session, ctx.run.id or 0, stage.id, ev.id or 0)
    if row is None:
        raise Conflict("该材料未用于本阶段", details={"rule": "not_linked"})
    session.delete(row)
    flush(session)
    _log_link(session, ctx, actor, "evidence.unlinked", ev)
    return ev


def _log_link(session: Session, ctx: RunContext, actor: Actor, action: str, ev: Evidence) -> None:
    log(
        session,
        ctx,
        action,
        actor,
        evidence_id=ev.id,
        stage=ctx.run.stage,
        stage_name=stage_label(ctx.tpl, ctx.run.stage),
        kind=ev.kind,
        subject=ev.subject,
    )
    finish(session, ctx)


def links_of(session: Session, evidence_ids: Sequence[int]) -> dict[int, list[EvidenceLink]]:
    """The uses of each record, oldest first."""
    out: dict[int, list[EvidenceLink]] = {}
    if not evidence_ids:
        return out
    rows = session.execute(
        select(EvidenceLink)
        .where(col(EvidenceLink.evidence_id).in_(sorted(set(evidence_ids))))
        .order_by(col(EvidenceLink.id))
    ).scalars()
    for row in rows:
        out.setdefault(row.evidence_id, []).append(row)
    return out

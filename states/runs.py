"""Runs: requests to advance, approvals up the tree, returns, withdrawals, extensions.

Every change to a run is a compare-and-set on `run.version` (or a row lock for evidence), and
the change, its audit event and its outbox rows are sent in one write in the caller's
transaction (`states.run_writes`): they commit together or not at all (see
`states.db.unit_of_work`). The shared core (loading a run's context with its facts, the
compare-and-set, audit and outbox helpers) is `states.run_core`, its statements compiled once
(`states.fastsql`); evidence is `states.evidence` (`record_evidence` is re-exported here).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from states.catalog import DONE
from states.errors import (
    ConcurrentUpdate,
    Conflict,
    Forbidden,
    InvalidInput,
    RequirementsUnmet,
)
from states.evidence.records import record as record_evidence
from states.inbox import ESCALATION_KINDS
from states.machines import ADVANCE, RETURN_PREFIX, Outcome, fire, stage_label
from states.models import (
    Organisation,
    Request,
    RequestKind,
    RequestStatus,
    Role,
    Run,
)
from states.run_core import (
    ACT_ROLES,
    STATUS_LABELS,
    SUPERIOR_ROLES,
    RunContext,
    checklist,
    history,
    insert_request,
    load_run,
    resolve_chain,
)
from states.run_core import acting_as as _acting_as
from states.run_core import cas as _cas
from states.run_core import close_request as _close
from states.run_core import decide as _decide
from states.run_core import decided_before as _decided_before
from states.run_core import facts as _facts
from states.run_core import finish as _finish
from states.run_core import load_request as _load_request_ctx
from states.run_core import log as _log
from states.run_core import notify as _notify
from states.run_core import update_pending as _update_pending
from states.schedule import deadline_for
from states.timeutil import format_local, utcnow
from states.users import Actor
from states.workcal import cached_calendar

#: Names other modules import from here (the core moved to `states.run_core`).
__all__ = [
    "ACT_ROLES",
    "STATUS_LABELS",
    "SUPERIOR_ROLES",
    "RunContext",
    "allowed_actions",
    "approve",
    "checklist",
    "history",
    "load_request",
    "load_run",
    "record_evidence",
    "request_advance",
    "request_extension",
    "resolve_chain",
    "return_request",
    "send_back",
    "withdraw",
]


def _advance_or_raise(session: Session, ctx: RunContext) -> Outcome:
    """Fire `advance` against the stage's facts; raise RequirementsUnmet with every reason."""
    run = ctx.run
    facts = _facts(session, ctx)
    outcome = fire(ctx.tpl, run.stage, ADVANCE, facts)
    if not outcome.moved:
        raise RequirementsUnmet(
            "尚不满足进入下一阶段的条件：" + "；".join(u.reason for u in outcome.unmet),
            details=[{"requirement": u.key, "reason": u.reason} for u in outcome.unmet],
        )
    return outcome


def _open_request(
    session: Session,
    ctx: RunContext,
    actor: Actor,
    kind: RequestKind,
    to_stage: str,
    on_behalf: bool,
    comment: str | None,
    requested_deadline: datetime | None = None,
    now: datetime | None = None,
) -> Request:
    """Insert a pending request at the first step of its approval chain."""
    chain = resolve_chain(session, ctx, kind)
    now = now or utcnow()
    values: dict[str, Any] = {
        "created_at": now,
        "submitted_at": now,
        "run_id": ctx.run.id or 0,
        "kind": kind,
        "from_stage": ctx.run.stage,
        "to_stage": to_stage,
        "status": RequestStatus.PENDING,
        "chain": chain,
        "step": 0,
        "current_approver_org_id": chain[0],
        "requested_by": actor.user_id,
        "on_behalf": on_behalf,
        "comment": comment,
        "requested_deadline": requested_deadline,
    }
    return insert_request(session, ctx, values)


def request_advance(
    session: Session,
    *,
    run_id: int,
    actor: Actor,
    comment: str | None = None,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> Request:
    """Ask to move the run to its next stage; 409 with every unmet requirement if not ready.

    `now` (default: the clock) is when the request is made: approval SLAs count from it.
    """
    ctx = load_run(session, run_id, actor, with_facts=True, new_request=True)
    run = ctx.run
    if expected_version is not None and expected_version != run.version:
        raise ConcurrentUpdate("该创建进度已被他人更新，请刷新后重试")
    on_behalf = _acting_as(ctx, actor)
    if run.stage == DONE:
        raise Conflict("该创建进度已完成全部阶段", details={"rule": "done"})
    if run.pending_request_id is not None:
        raise Conflict(
            f"已有待审批的申请（#{run.pending_request_id}），请等待审批或先撤回",
            details={"rule": "pending_request", "request_id": run.pending_request_id},
        )
    outcome = _advance_or_raise(session, ctx)
    req = _open_request(
        session,
        ctx,
        actor,
        RequestKind.ADVANCE,
        outcome.state,
        on_behalf,
        (comment or "").strip() or None,
        now=now,
    )
    chain = req.chain
    _cas(session, ctx, pending_request_id=req.id)
    _log(
        session,
        ctx,
        "request.submitted",
        actor,
        request_id=req.id,
        from_stage=run.stage,
        to_stage=outcome.state,
        chain=chain,
        on_behalf=on_behalf,
        comment=req.comment,
    )
    _notify(
        session,
        ctx,
        "request_submitted",
        f"{req.id}",
        chain[0],
        request_id=req.id,
        stage=stage_label(ctx.tpl, req.from_stage),
        to_stage=stage_label(ctx.tpl, outcome.state),
        comment=req.comment,
    )
    _finish(session, ctx, now)
    return req


def request_extension(
    session: Session, *, run_id: int, actor: Actor, new_deadline: datetime, reason: str
) -> Request:
    """Ask the parent for a later deadline (延期) with a reason."""
    ctx = load_run(session, run_id, actor)
    run = ctx.run
    on_behalf = _acting_as(ctx, actor)
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("申请延期须说明理由", details=[{"field": "reason"}])
    if run.stage == DONE:
        raise Conflict("该创建进度已完成，无需延期", details={"rule": "done"})
    if new_deadline.tzinfo is None:
        raise InvalidInput("新的截止时间须带时区", details=[{"field": "new_deadline"}])
    if run.deadline is not None and new_deadline <= run.deadline:
        raise InvalidInput(
            f"新的截止时间须晚于现在的截止时间 {format_local(run.deadline)}",
            details=[{"field": "new_deadline"}],
        )
    pending = session.execute(
        select(Request.id).where(
            Request.run_id == run_id,
            Request.kind == RequestKind.EXTENSION,
            Request.status == RequestStatus.PENDING,
        )
    ).first()
    if pending:
        raise Conflict(
            f"已有待审批的延期申请（#{pending[0]}）", details={"rule": "pending_extension"}
        )
    req = _open_request(
        session, ctx, actor, RequestKind.EXTENSION, run.stage, on_behalf, reason, new_deadline
    )
    chain = req.chain
    _cas(session, ctx)  # serialise with every other change to this run
    _log(
        session,
        ctx,
        "extension.requested",
        actor,
        request_id=req.id,
        reason=reason,
        new_deadline=new_deadline.isoformat(),
        on_behalf=on_behalf,
    )
    _notify(
        session,
        ctx,
        "extension_requested",
        f"{req.id}",
        chain[0],
        request_id=req.id,
        reason=reason,
        new_deadline=format_local(new_deadline),
    )
    _finish(session, ctx)
    return req


def _load_request(session: Session, request_id: int, actor: Actor) -> tuple[Request, RunContext]:
    return _load_request_ctx(session, request_id, actor)


def _check_approver(session: Session, req: Request, ctx: RunContext, actor: Actor) -> None:
    if req.status != RequestStatus.PENDING:
        raise Conflict(
            f"该申请已{STATUS_LABELS.get(req.status, req.status)}，不能再审批",
            details={"rule": "not_pending", "status": req.status},
        )
    if req.requested_by == actor.user_id:
        raise Forbidden("不能审批自己提交的申请", details={"rule": "self_approval"})
    if actor.holds_on(ctx.org.id or 0, frozenset({Role.SECRETARY})):
        raise Forbidden("不能审批本支部的申请（本人任该支部书记）", details={"rule": "own_branch"})
    approver_id = req.current_approver_org_id or 0
    if not actor.holds_on(approver_id, SUPERIOR_ROLES):
        known = ctx.approver if ctx.approver and ctx.approver[0] == approver_id else None
        path, name = known[1:] if known else _org_path_name(session, approver_id)
        if not actor.holds_above(path, frozenset({Role.ADMIN})):
            raise Forbidden(f"此步须由「{name}」的委员审批", details={"rule": "not_approver"})
    if req.step > 0 and _decided_before(session, req, actor):
        raise Forbidden("同一申请的各级审批须由不同的人作出", details={"rule": "same_approver"})


def _org_path_name(session: Session, org_id: int) -> tuple[str, str]:
    org = session.get(Organisation, org_id)
    assert org is not None
    return org.path, org.name


def approve(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    opinion: str | None = None,
    now: datetime | None = None,
) -> Request:
    """Approve the request's current step; the last step applies the change at `now`."""
    req, ctx = _load_request(session, request_id, actor)
    _check_approver(session, req, ctx, actor)
    opinion = (opinion or "").strip() or None
    _decide(session, ctx, req, actor, "approved", opinion, now)
    if req.step + 1 < len(req.chain):
        _forward(session, req, ctx, actor, opinion)
    elif req.kind == RequestKind.EXTENSION:
        _grant_extension(session, req, ctx, actor, opinion, now or utcnow())
    else:
        _apply_advance(session, req, ctx, actor, opinion, now or utcnow())
    _finish(session, ctx, now)
    return req


def _forward(
    session: Session, req: Request, ctx: RunContext, actor: Actor, opinion: str | None
) -> None:
    step = req.step
    _update_pending(session, ctx, req, step=step + 1, current_approver_org_id=req.chain[step + 1])
    _cas(session, ctx)
    _log(
        session, ctx, "request.step_approved", actor, request_id=req.id, step=step, opinion=opinion
    )
    _notify(
        session,
        ctx,
        "request_submitted",
        f"{req.id}:{step + 1}",
        req.chain[step + 1],
        request_id=req.id,
        stage=stage_label(ctx.tpl, req.from_stage),
        to_stage=stage_label(ctx.tpl, req.to_stage or DONE),
    )


def _enter(session: Session, ctx: RunContext, stage: str, now: datetime) -> dict[str, Any]:
    ctx.writes.resolve["run_id"] = ctx.run.id  # the stage it leaves: reminders and 督办 done
    deadline = deadline_for(ctx.campaign.schedule, stage, now, lambda: cached_calendar(session))
    return {
        "stage": stage,
        "entered_at": now,
        "deadline": deadline,
        "escalation_level": 0,
        "completed_at": now if stage == DONE else None,
    }


def _apply_advance(
    session: Session,
    req: Request,
    ctx: RunContext,
    actor: Actor,
    opinion: str | None,
    now: datetime,
) -> None:
    run = ctx.run
    if run.stage != req.from_stage:
        raise Conflict("所处阶段已变化，此申请已失效", details={"rule": "stale_request"})
    outcome = _advance_or_raise(session, ctx)
    _close(session, ctx, req, RequestStatus.APPROVED, now)
    _cas(session, ctx, pending_request_id=None, **_enter(session, ctx, outcome.state, now))
    _log(
        session,
        ctx,
        "stage.advanced",
        actor,
        request_id=req.id,
        from_stage=req.from_stage,
        to_stage=outcome.state,
        opinion=opinion,
    )
    _notify(
        session,
        ctx,
        "request_approved",
        f"{req.id}",
        ctx.org.id or 0,
        request_id=req.id,
        stage=stage_label(ctx.tpl, req.from_stage),
        to_stage=stage_label(ctx.tpl, outcome.state),
        opinion=opinion,
        deadline=format_local(run.deadline),
    )


def _grant_extension(
    session: Session,
    req: Request,
    ctx: RunContext,
    actor: Actor,
    opinion: str | None,
    now: datetime,
) -> None:
    old = ctx.run.deadline
    _close(session, ctx, req, RequestStatus.APPROVED, now)
    _cas(session, ctx, deadline=req.requested_deadline, escalation_level=0)
    # The deadline moved: the run's 督办 notices are done (its reminders still stand).
    ctx.writes.resolve.update(run_id=ctx.run.id, run_kinds=ESCALATION_KINDS)
    _log(
        session,
        ctx,
        "extension.granted",
        actor,
        request_id=req.id,
        reason=req.comment,
        old_deadline=old.isoformat() if old else None,
        new_deadline=req.requested_deadline.isoformat() if req.requested_deadline else None,
        opinion=opinion,
    )
    _notify(
        session,
        ctx,
        "extension_granted",
        f"{req.id}",
        ctx.org.id or 0,
        request_id=req.id,
        new_deadline=format_local(req.requested_deadline),
        opinion=opinion,
    )


def return_request(
    session: Session,
    *,
    request_id: int,
    actor: Actor,
    reason: str,
    to_stage: str | None = None,
    now: datetime | None = None,
) -> Request:
    """Return (退回) a pending request with a reason; optionally send the run back a stage."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("退回须填写意见", details=[{"field": "reason"}])
    req, ctx = _load_request(session, request_id, actor)
    _check_approver(session, req, ctx, actor)
    now = now or utcnow()
    _decide(session, ctx, req, actor, "returned", reason, now)
    _close(session, ctx, req, RequestStatus.RETURNED, now, reason)
    values: dict[str, Any] = {}
    if req.kind == RequestKind.ADVANCE:
        values["pending_request_id"] = None
    if to_stage is not None:
        outcome = fire(ctx.tpl, ctx.run.stage, RETURN_PREFIX + to_stage)
        values.update(_enter(session, ctx, outcome.state, now))
    from_stage = ctx.run.stage
    _cas(session, ctx, **values)
    _log(
        session,
        ctx,
        "request.returned",
        actor,
        request_id=req.id,
        kind=req.kind,
        step=req.step,
        reason=reason,
        from_stage=from_stage,
        to_stage=to_stage,
    )
    _notify(
        session,
        ctx,
        "request_returned",
        f"{req.id}",
        ctx.org.id or 0,
        request_id=req.id,
        kind=req.kind,
        reason=reason,
        stage=stage_label(ctx.tpl, ctx.run.stage),
    )
    _finish(session, ctx, now)
    return req


def send_back(
    session: Session,
    *,
    run_id: int,
    actor: Actor,
    to_stage: str,
    reason: str,
    now: datetime | None = None,
) -> Run:
    """A superior returns a run to an earlier stage with a reason (cancels a pending request)."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("退回须填写意见", details=[{"field": "reason"}])
    ctx = load_run(session, run_id, actor)
    if not actor.holds_above(ctx.org.path, SUPERIOR_ROLES):
        raise Forbidden("只有上级党组织委员可以退回创建进度")
    from_stage = ctx.run.stage
    if from_stage == DONE:
        raise Conflict("该创建进度已完成，不能退回", details={"rule": "done"})
    outcome = fire(ctx.tpl, from_stage, RETURN_PREFIX + to_stage)
    now = now or utcnow()
    pending = (
        session.get(Request, ctx.run.pending_request_id) if ctx.run.pending_request_id else None
    )
    if pending is not None:
        _close(session, ctx, pending, RequestStatus.RETURNED, now, reason)
    _cas(session, ctx, pending_request_id=None, **_enter(session, ctx, outcome.state, now))
    _log(
        session,
        ctx,
        "run.sent_back",
        actor,
        from_stage=from_stage,
        to_stage=to_stage,
        reason=reason,
        cancelled_request=pending.id if pending else None,
    )
    _notify(
        session,
        ctx,
        "run_sent_back",
        f"{ctx.run.id}:{ctx.run.version + 1}",  # the version this change gives the run
        ctx.org.id or 0,
        reason=reason,
        stage=stage_label(ctx.tpl, to_stage),
    )
    _finish(session, ctx, now)
    return ctx.run


def withdraw(session: Session, *, request_id: int, actor: Actor) -> Request:
    """The requester withdraws a pending request."""
    req, ctx = _load_request(session, request_id, actor)
    if req.requested_by != actor.user_id:
        raise Forbidden("只有申请人本人可以撤回申请", details={"rule": "not_requester"})
    if req.status != RequestStatus.PENDING:
        raise Conflict(
            f"该申请已{STATUS_LABELS.get(req.status, req.status)}，不能撤回",
            details={"rule": "not_pending", "status": req.status},
        )
    now = utcnow()
    _close(session, ctx, req, RequestStatus.WITHDRAWN, now)
    values = {"pending_request_id": None} if req.kind == RequestKind.ADVANCE else {}
    _cas(session, ctx, **values)
    _log(session, ctx, "request.withdrawn", actor, request_id=req.id, kind=req.kind)
    _notify(
        session,
        ctx,
        "request_withdrawn",
        f"{req.id}",
        req.current_approver_org_id or 0,
        request_id=req.id,
        kind=req.kind,
    )
    _finish(session, ctx, now)
    return req


def allowed_actions(session: Session, ctx: RunContext, actor: Actor) -> list[str]:
    """Return what `actor` may do on this run now (for the API and the pages)."""
    actions: list[str] = []
    run = ctx.run
    own = actor.holds_on(ctx.org.id or 0, ACT_ROLES)
    superior = actor.holds_above(ctx.org.path, SUPERIOR_ROLES)
    if run.stage != DONE and (own or superior):
        actions += ["record_evidence", "request_extension"]
        if run.pending_request_id is None:
            actions.append("request_advance")
    if run.pending_request_id is not None:
        req = session.get(Request, run.pending_request_id)
        if req is not None and req.requested_by == actor.user_id:
            actions.append("withdraw")
        if req is not None and _may_decide(session, req, ctx, actor):
            actions += ["approve", "return"]
    if superior and run.stage not in (DONE, ctx.tpl.stage_ids[0]):
        actions.append("send_back")
    return actions


def _may_decide(session: Session, req: Request, ctx: RunContext, actor: Actor) -> bool:
    try:
        _check_approver(session, req, ctx, actor)
    except (Forbidden, Conflict):
        return False
    return True


def load_request(session: Session, request_id: int, actor: Actor) -> Request:
    """Return a request whose run the actor reaches; NotFound otherwise (the two look alike)."""
    return _load_request(session, request_id, actor)[0]

"""The core of a run's services: loading a run within reach, who acts for it, the
compare-and-set on `run.version`, its audit events and outbox rows, its checklist, and the
request primitives shared by `states.runs` (requests, approvals) and `states.evidence`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from states import audit, inbox, outbox
from states.campaigns import template_by_digest
from states.catalog import DONE, Template
from states.errors import ConcurrentUpdate, Forbidden, NotFound
from states.members.queries import active_members
from states.models import (
    Campaign,
    Decision,
    Organisation,
    Request,
    RequestStatus,
    Role,
    Run,
    TemplateVersion,
)
from states.requirements import RequirementStatus, RunFacts, evaluate, load_facts
from states.timeutil import utcnow
from states.users import Actor

ACT_ROLES = frozenset({Role.SECRETARY, Role.COMMITTEE, Role.ADMIN})
SUPERIOR_ROLES = frozenset({Role.COMMITTEE, Role.ADMIN})
STATUS_LABELS = {
    "pending": "待审批",
    "approved": "已通过",
    "returned": "已退回",
    "withdrawn": "已撤回",
}


@dataclass
class RunContext:
    """A run with everything needed to decide on it."""

    run: Run
    campaign: Campaign
    org: Organisation
    tpl: Template


def load_run(
    session: Session, run_id: int, actor: Actor | None, *, lock: bool = False
) -> RunContext:
    """Return the run's context; NotFound if missing or outside the actor's reach."""
    stmt = (
        select(Run, Organisation, Campaign, TemplateVersion.digest)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(Run.id == run_id)
        .execution_options(populate_existing=True)  # decide on what the database holds now
    )
    if lock:
        stmt = stmt.with_for_update(of=Run)
    row = session.exec(stmt).first()
    if row is None or (actor is not None and not actor.reaches(row[1].path)):
        raise NotFound("该创建进度不存在", details={"run_id": run_id})
    run, org, campaign, digest = row
    return RunContext(
        run, campaign, org, template_by_digest(session, campaign.template_version_id, digest)
    )


def acting_as(ctx: RunContext, actor: Actor) -> bool:
    """Return whether the actor acts on the branch's behalf (代办); Forbidden if not allowed."""
    if actor.holds_on(ctx.org.id or 0, ACT_ROLES):
        return False
    if actor.holds_above(ctx.org.path, SUPERIOR_ROLES):
        return True
    raise Forbidden("只有本组织书记、委员或上级党委委员（代办）可以办理此事项")


def cas(session: Session, run: Run, **values: Any) -> None:
    """Apply `values` to the run only if nobody changed it since it was read."""
    result = session.execute(
        update(Run)
        .where(col(Run.id) == run.id, col(Run.version) == run.version)
        .values(version=run.version + 1, **values)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise ConcurrentUpdate("该创建进度刚被他人更新，请刷新后重试", details={"run_id": run.id})
    # Mirror the committed values on the loaded object without marking it dirty (no re-SELECT).
    for key, value in {"version": run.version + 1, **values}.items():
        set_committed_value(run, key, value)


def flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConcurrentUpdate("该事项刚被他人处理，请刷新后重试") from exc


def log(session: Session, ctx: RunContext, action: str, actor: Actor | None, **data: Any) -> None:
    audit.append(
        session,
        stream=f"run:{ctx.run.id}",
        action=action,
        actor_id=actor.user_id if actor else None,
        run_id=ctx.run.id,
        data={"org": ctx.org.code, **data},
    )


def notify(
    session: Session, ctx: RunContext, event_kind: str, key: str, org_id: int, **payload: Any
) -> None:
    outbox.enqueue(
        session,
        event_kind=event_kind,
        dedupe_key=f"{event_kind}:{key}",
        run_id=ctx.run.id,
        org_id=org_id,
        payload={
            "run_id": ctx.run.id,
            "campaign_id": ctx.campaign.id,
            "campaign": ctx.campaign.name,
            "org_code": ctx.org.code,
            "org_name": ctx.org.name,
            **payload,
        },
    )


def checklist(session: Session, ctx: RunContext) -> list[RequirementStatus]:
    """Return the current stage's requirements, met or unmet, with reasons."""
    if ctx.run.stage == DONE:
        return []
    return evaluate(ctx.tpl.stage(ctx.run.stage), facts(session, ctx))


def facts(session: Session, ctx: RunContext) -> RunFacts:
    """The facts of the run's current stage; with a roster, its 在册 members by name."""
    run = ctx.run
    members = active_members(session, ctx.org.id or 0)
    roster = {m.id or 0: m.name for m in members} or None
    return load_facts(
        session,
        run_id=run.id or 0,
        stage=run.stage,
        member_count=ctx.org.member_count,
        roster=roster,
    )


def decide(
    session: Session,
    req: Request,
    actor: Actor,
    outcome: str,
    opinion: str | None,
    now: datetime | None = None,
) -> None:
    """Record one step's decision; the unique (request, step) key lets only one approver win."""
    try:  # no savepoint: a conflict aborts the whole unit of work anyway
        session.execute(
            insert(Decision).values(
                request_id=req.id,
                step=req.step,
                org_id=req.current_approver_org_id,
                decided_by=actor.user_id,
                outcome=outcome,
                opinion=opinion,
                created_at=now or utcnow(),
            )
        )
    except IntegrityError as exc:
        raise ConcurrentUpdate("该事项刚被他人处理，请刷新后重试") from exc


def close_request(
    session: Session, req: Request, status: RequestStatus, now: datetime, reason: str | None = None
) -> None:
    """Mark a pending request decided (approved, returned or withdrawn)."""
    values: dict[str, Any] = {"status": status, "decided_at": now}
    if reason is not None:
        values["return_reason"] = reason
    update_pending(session, req, **values)


def update_pending(session: Session, req: Request, **values: Any) -> None:
    """Change a request only if it is still pending at the step it was read at.

    The request is read before its run, so a decision racing another one (a withdrawal, a
    second approver) could otherwise pass the run's compare-and-set on a version read after the
    other committed: this conditional UPDATE makes exactly one of them win.
    """
    result = session.execute(
        update(Request)
        .where(
            col(Request.id) == req.id,
            col(Request.status) == RequestStatus.PENDING,
            col(Request.step) == req.step,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if cast(CursorResult[Any], result).rowcount != 1:
        raise ConcurrentUpdate("该申请刚被他人处理，请刷新后重试", details={"request_id": req.id})
    for key, value in values.items():
        set_committed_value(req, key, value)
    inbox.resolve_request(session, req.id, values.get("decided_at"))  # its 待审批 notices


def decided_before(session: Session, req: Request, actor: Actor) -> bool:
    stmt = select(Decision.id).where(
        Decision.request_id == req.id, Decision.decided_by == actor.user_id
    )
    return session.exec(stmt).first() is not None


def history(
    session: Session, run_id: int, actor: Actor | None, *, limit: int | None = None, offset: int = 0
) -> tuple[list[audit.AuditEvent], int]:
    """Return a page of the run's audit events, newest first, and how many there are."""
    ctx = load_run(session, run_id, actor)
    where = audit.AuditEvent.stream == f"run:{ctx.run.id}"
    stmt = select(audit.AuditEvent).where(where).order_by(col(audit.AuditEvent.seq).desc())
    if limit is not None:
        stmt = stmt.limit(limit).offset(offset)
    total = session.execute(
        select(func.count()).select_from(audit.AuditEvent).where(where)
    ).scalar_one()
    return list(session.execute(stmt).scalars()), int(total)

"""The core of a run's services: loading a run within reach, who acts for it, the
compare-and-set on `run.version`, its audit events and outbox rows, its checklist, and the
request primitives shared by `states.runs` (requests, approvals) and `states.evidence`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import (
    String,
    any_,
    bindparam,
    cast,
    func,
    insert,
    literal,
    literal_column,
    or_,
    union_all,
)
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from states import audit
from states.campaigns import template_by_digest
from states.catalog import DONE, Template
from states.errors import ConcurrentUpdate, Conflict, Forbidden, NotFound
from states.fastsql import Prepared, detached, in_list, json_rows, mirror, rows
from states.members.models import ACTIVE, Member
from states.models import (
    Campaign,
    Decision,
    Evidence,
    EvidenceLink,
    Organisation,
    Request,
    RequestKind,
    RequestStatus,
    Role,
    Run,
    TemplateVersion,
)
from states.orgs import path_codes
from states.requirements import RequirementStatus, RunFacts, evaluate
from states.run_writes import Writes, apply
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


class _LineOrg(NamedTuple):
    id: int
    code: str
    kind: str
    path: str


@dataclass
class RunContext:
    """A run with everything needed to decide on it."""

    run: Run
    campaign: Campaign
    org: Organisation
    tpl: Template
    writes: Writes = field(default_factory=Writes)
    #: (id, path, name) of the organisation approving the loaded request's step, if loaded.
    approver: tuple[int, str, str] | None = None
    #: The facts of the stage the run was loaded at, when loaded with it (`facts`).
    loaded_facts: tuple[str, RunFacts] | None = None
    #: An id drawn for a request this command may open (`load_run(new_request=True)`, on
    #: PostgreSQL): the request is then inserted with the command's other writes.
    new_request_id: int | None = None
    #: The organisations along the run's path and the campaign's root, loaded with the
    #: context for a command that may open a request (`resolve_chain`).
    loaded_line: list[_LineOrg] | None = None


def finish(session: Session, ctx: RunContext, now: datetime | None = None) -> None:
    """Send what the command decided to write (`states.run_writes.apply`)."""
    apply(session, ctx.run, ctx.writes, now or utcnow())


#: The tables a run's context is loaded from, in the order of the load query's columns.
_RUN: Any = Run.__table__  # type: ignore[attr-defined]
_ORG: Any = Organisation.__table__  # type: ignore[attr-defined]
_CAMPAIGN: Any = Campaign.__table__  # type: ignore[attr-defined]
_REQUEST = Request.__table__  # type: ignore[attr-defined]
_TV = TemplateVersion.__table__  # type: ignore[attr-defined]
_PARTS = ((Run, _RUN), (Organisation, _ORG), (Campaign, _CAMPAIGN))


def _context_query() -> Any:
    """The run, its organisation, its campaign and its template version's digest (Core)."""
    cols = [c for _m, t in _PARTS for c in t.c]
    return (
        sa_select(*cols, _TV.c.digest)
        .join(_ORG, _ORG.c.id == _RUN.c.org_id)
        .join(_CAMPAIGN, _CAMPAIGN.c.id == _RUN.c.campaign_id)
        .join(_TV, _TV.c.id == _CAMPAIGN.c.template_version_id)
    )


def _entities(row: Sequence[Any], parts: Sequence[tuple[Any, Any]]) -> tuple[list[Any], int]:
    """Detached instances of each (model, table) from consecutive columns of `row`."""
    out, at = [], 0
    for model, table in parts:
        keys = table.c.keys()
        out.append(detached(model, keys, row[at : at + len(keys)]))
        at += len(keys)
    return out, at


def _facts_columns() -> list[Any]:
    """The run's current stage's active evidence (kind, subject) and its organisation's 在册
    roster (id, name), each as one JSON array: the guard's facts in the context's own query."""
    ev, link = Evidence.__table__, EvidenceLink.__table__  # type: ignore[attr-defined]
    member = Member.__table__  # type: ignore[attr-defined]
    evidence = (
        sa_select(json_rows(ev.c.kind, ev.c.subject))
        .select_from(ev.join(link, link.c.evidence_id == ev.c.id))
        .where(link.c.run_id == _RUN.c.id, link.c.stage == _RUN.c.stage, ev.c.status == "active")
    )
    roster = sa_select(json_rows(member.c.id, member.c.name)).where(
        member.c.org_id == _RUN.c.org_id, member.c.status == ACTIVE
    )
    return [evidence.scalar_subquery(), roster.scalar_subquery()]


def _loaded_facts(ctx: RunContext, evidence: list[Any], roster: list[Any]) -> tuple[str, RunFacts]:
    """The facts from the JSON columns (decoded by their type on both databases)."""
    counts: dict[tuple[str, str | None], int] = {}
    for kind, subject in evidence:
        counts[(kind, subject)] = counts.get((kind, subject), 0) + 1
    return ctx.run.stage, _run_facts(ctx, counts, [(name, int(i)) for i, name in roster])


def _context(
    session: Session, row: Sequence[Any], with_facts: bool = False
) -> tuple[RunContext, int]:
    """The context from a row of `_context_query` (with the facts columns if `with_facts`);
    and where the row's other columns start."""
    (run, org, campaign), at = _entities(row, _PARTS)
    tpl = template_by_digest(session, campaign.template_version_id, row[at])
    ctx = RunContext(run, campaign, org, tpl)
    if with_facts:
        ctx.loaded_facts = _loaded_facts(ctx, row[at + 1], row[at + 2])
        return ctx, at + 3
    return ctx, at + 1


@cache
def _request_query() -> Prepared:
    """Built once: the request, its run's context and its step's approver, by `request_id`."""
    approver = _ORG.alias("approver")
    return Prepared(
        _context_query()
        .add_columns(*_facts_columns(), *_REQUEST.c, approver.c.path, approver.c.name)
        .join(_REQUEST, _REQUEST.c.run_id == _RUN.c.id)
        .outerjoin(approver, approver.c.id == _REQUEST.c.current_approver_org_id)
        .where(_REQUEST.c.id == bindparam("request_id"))
    )


@cache
def _run_query(lock: bool, with_facts: bool, new_request: bool = False) -> Prepared:
    stmt = _context_query().where(_RUN.c.id == bindparam("run_id"))
    if with_facts:
        stmt = stmt.add_columns(*_facts_columns())
    stmt = stmt.with_for_update(of=_RUN) if lock else stmt
    if not new_request:
        return Prepared(stmt)
    opening = stmt.add_columns(_NEXT_REQUEST_ID, _line_column())
    return Prepared(stmt, lambda d: opening if d == "postgresql" else stmt)


#: A request id drawn from its sequence with the context (PostgreSQL only).
_NEXT_REQUEST_ID = func.nextval(literal_column("'request_id_seq'"))


def _line_column() -> Any:
    """The organisations named along the run's organisation's path (the campaign's root is
    one of them: a run's organisation is in its campaign's subtree), as one JSON array of
    (id, code, kind, path): what `_line_within` would read. PostgreSQL: the path split into
    codes, each looked up by the unique index on `code`."""
    o = _ORG.alias("line")
    # The path's "C" collation would carry over to its codes and keep `code`'s index unused.
    codes = func.string_to_array(_ORG.c.path.collate("default"), literal("/"))
    return (
        sa_select(json_rows(o.c.id, o.c.code, o.c.kind, o.c.path))
        .where(o.c.code == any_(codes))
        .scalar_subquery()
    )


def load_request(session: Session, request_id: int, actor: Actor) -> tuple[Request, RunContext]:
    """The request, its run's context and its current approver in one query.

    NotFound if the request is missing or its run out of the actor's reach. The objects are
    read as they are now in the database, into no session (`states.fastsql.detached`)."""
    found = rows(session.connection(), _request_query(), {"request_id": request_id})
    if not found or not actor.reaches(found[0][_ORG_PATH]):
        raise NotFound("申请不存在", details={"request_id": request_id})
    ctx, at = _context(session, found[0], with_facts=True)
    (req,), at = _entities(found[0][at:], ((Request, _REQUEST),))
    path, name = found[0][-2:]
    if path is not None:
        ctx.approver = (req.current_approver_org_id or 0, path, name)
    return req, ctx


def load_run(
    session: Session,
    run_id: int,
    actor: Actor | None,
    *,
    lock: bool = False,
    with_facts: bool = False,
    new_request: bool = False,
) -> RunContext:
    """Return the run's context; NotFound if missing or outside the actor's reach. In the
    same query: `with_facts`, its stage's facts; `new_request`, an id for a request the
    command may open (PostgreSQL; `insert_request`)."""
    stmt = _run_query(lock, with_facts, new_request)
    found = rows(session.connection(), stmt, {"run_id": run_id})
    if not found or (actor is not None and not actor.reaches(found[0][_ORG_PATH])):
        raise NotFound("该创建进度不存在", details={"run_id": run_id})
    ctx, at = _context(session, found[0], with_facts)
    if at < len(found[0]):  # `new_request` on PostgreSQL
        ctx.new_request_id = int(found[0][at])
        ctx.loaded_line = [_LineOrg(*o) for o in found[0][at + 1]]
    return ctx


#: Where the organisation's path is in a row of `_context_query`.
_ORG_PATH = len(_RUN.c) + _ORG.c.keys().index("path")


def acting_as(ctx: RunContext, actor: Actor) -> bool:
    """Return whether the actor acts on the branch's behalf (代办); Forbidden if not allowed."""
    if actor.holds_on(ctx.org.id or 0, ACT_ROLES):
        return False
    if actor.holds_above(ctx.org.path, SUPERIOR_ROLES):
        return True
    raise Forbidden("只有本组织书记、委员或上级党委委员（代办）可以办理此事项")


def cas(session: Session, ctx: RunContext, **values: Any) -> None:
    """Apply `values` to the run only if nobody changed it since it was read (at `finish`).

    The loaded run shows the new values at once; its version moves when they are sent.
    """
    w = ctx.writes
    w.run_values = {**(w.run_values or {}), **values}
    mirror(ctx.run, values)


def _insert_request_now(session: Session, values: dict[str, Any]) -> int:
    try:
        ((rid,),) = rows(session.connection(), _request_insert(tuple(sorted(values))), values)
    except IntegrityError as exc:
        raise ConcurrentUpdate("该事项刚被他人处理，请刷新后重试") from exc
    return int(rid)


@cache
def _request_insert(keys: tuple[str, ...]) -> Prepared:
    t = _REQUEST
    values = {k: bindparam(k, type_=t.c[k].type) for k in keys}
    return Prepared(insert(t).values(**values).returning(t.c.id))


def insert_request(session: Session, ctx: RunContext, values: dict[str, Any]) -> Request:
    """A new request for the run, detached: with an id drawn with the context, written with
    the command's other writes (`finish`); else inserted now (a statement built once per set
    of columns)."""
    if ctx.new_request_id is not None:
        rid, ctx.new_request_id = ctx.new_request_id, None
        ctx.writes.new_request = {"id": rid, **values}
    else:
        rid = _insert_request_now(session, values)
    row = dict.fromkeys(_REQUEST.c.keys()) | values | {"id": rid}
    return detached(Request, list(row), list(row.values()))


def flush(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConcurrentUpdate("该事项刚被他人处理，请刷新后重试") from exc


def log(session: Session, ctx: RunContext, action: str, actor: Actor | None, **data: Any) -> None:
    """An event for the run's audit stream, chained at `finish` after the head the run holds."""
    ctx.writes.events.append(
        (action, actor.user_id if actor else None, {"org": ctx.org.code, **data})
    )


def notify(
    session: Session, ctx: RunContext, event_kind: str, key: str, org_id: int, **payload: Any
) -> None:
    """An outbox row, written with the change that causes it (`states.outbox`)."""
    now = utcnow()
    ctx.writes.outbox.append(
        {
            "event_kind": event_kind,
            "dedupe_key": f"{event_kind}:{key}",
            "run_id": ctx.run.id,
            "org_id": org_id,
            "payload": {
                "run_id": ctx.run.id,
                "campaign_id": ctx.campaign.id,
                "campaign": ctx.campaign.name,
                "org_code": ctx.org.code,
                "org_name": ctx.org.name,
                **payload,
            },
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
    )


def checklist(session: Session, ctx: RunContext) -> list[RequirementStatus]:
    """Return the current stage's requirements, met or unmet, with reasons."""
    if ctx.run.stage == DONE:
        return []
    return evaluate(ctx.tpl.stage(ctx.run.stage), facts(session, ctx))


@cache
def _facts_query() -> Prepared:
    """Built once: a stage's active evidence counted by (kind, subject), and the roster."""
    counted = (
        select(literal("e"), Evidence.kind, Evidence.subject, func.count())
        .join(EvidenceLink, col(EvidenceLink.evidence_id) == col(Evidence.id))
        .where(
            col(EvidenceLink.run_id) == bindparam("run_id"),
            col(EvidenceLink.stage) == bindparam("stage"),
            col(Evidence.status) == "active",
        )
        .group_by(col(Evidence.kind), col(Evidence.subject))
    )
    roster = select(literal("m"), cast(Member.id, String), Member.name, literal(0)).where(
        col(Member.org_id) == bindparam("org_id"), col(Member.status) == ACTIVE
    )
    return Prepared(union_all(counted, roster))


def facts(session: Session, ctx: RunContext) -> RunFacts:
    """The facts of the run's current stage; with a roster, its 在册 members by name.

    Loaded with the context if it was (`load_run(with_facts=True)`, `load_request`); else one
    query: the stage's active evidence counted by (kind, subject), and the roster.
    """
    if ctx.loaded_facts is not None and ctx.loaded_facts[0] == ctx.run.stage:
        return ctx.loaded_facts[1]
    params = {"run_id": ctx.run.id, "stage": ctx.run.stage, "org_id": ctx.org.id}
    counts: dict[tuple[str, str | None], int] = {}
    members: list[tuple[str, int]] = []
    for part, a, b, n in rows(session.connection(), _facts_query(), params):
        if part == "e":
            counts[(a, b)] = int(n)
        else:
            members.append((b, int(a)))
    return _run_facts(ctx, counts, members)


def _run_facts(
    ctx: RunContext, counts: dict[tuple[str, str | None], int], members: list[tuple[str, int]]
) -> RunFacts:
    if members:
        return RunFacts(len(members), counts, {i: name for name, i in sorted(members)})
    return RunFacts(ctx.org.member_count, counts)


def decide(
    session: Session,
    ctx: RunContext,
    req: Request,
    actor: Actor,
    outcome: str,
    opinion: str | None,
    now: datetime | None = None,
) -> None:
    """Record one step's decision; the unique (request, step) key lets only one approver win."""
    ctx.writes.decision = {
        "request_id": req.id,
        "step": req.step,
        "org_id": req.current_approver_org_id,
        "decided_by": actor.user_id,
        "outcome": outcome,
        "opinion": opinion,
        "created_at": now or utcnow(),
    }


def close_request(
    session: Session,
    ctx: RunContext,
    req: Request,
    status: RequestStatus,
    now: datetime,
    reason: str | None = None,
) -> None:
    """Mark a pending request decided (approved, returned or withdrawn)."""
    values: dict[str, Any] = {"status": status, "decided_at": now}
    if reason is not None:
        values["return_reason"] = reason
    update_pending(session, ctx, req, **values)


def update_pending(session: Session, ctx: RunContext, req: Request, **values: Any) -> None:
    """Change a request only if it is still pending at the step it was read at.

    The request is read before its run, so a decision racing another one (a withdrawal, a
    second approver) could otherwise pass the run's compare-and-set on a version read after the
    other committed: this conditional UPDATE makes exactly one of them win. Its 待审批 notices
    resolve in the same write.
    """
    ctx.writes.request = (req, values)
    ctx.writes.resolve["request_id"] = req.id


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


def resolve_chain(session: Session, ctx: RunContext, kind: str) -> list[int]:
    """Return the approver organisations for leaving the current stage, nearest first.

    Only ancestors inside the campaign's subtree approve: a campaign never reaches above the
    organisation that launched it.
    """
    tpl = ctx.tpl
    steps = (
        tpl.approval.extension if kind == RequestKind.EXTENSION else tpl.chain_for(ctx.run.stage)
    )
    line = _line_within(session, ctx)
    chain: list[int] = []
    for step in steps:
        if step.parent is not None:
            org = line[step.parent - 1] if len(line) >= step.parent else None
        else:
            org = next((a for a in line if a.kind == step.nearest_kind), None)
        if org is not None and org.id not in chain:
            chain.append(org.id or 0)
    if not chain:
        raise Conflict(
            f"「{ctx.org.name}」在本活动中没有上级审批组织", details={"rule": "no_approver"}
        )
    return chain


@cache
def _line_query() -> Prepared:
    """Built once: organisations by code, and the campaign's root, as plain rows."""
    return Prepared(None, _line_for)


def _line_for(dialect: str) -> Any:
    o = _ORG
    return sa_select(o.c.id, o.c.code, o.c.kind, o.c.path).where(
        or_(in_list(o.c.code, "codes", dialect), o.c.id == bindparam("root"))
    )


def _line_within(session: Session, ctx: RunContext) -> list[Any]:
    """The run's ancestors inside the campaign's subtree, nearest first (rows with `id`,
    `code`, `kind`, `path`): one query."""
    codes = path_codes(ctx.org.path)[:-1]
    found = ctx.loaded_line
    if found is None:
        params = {"codes": codes, "root": ctx.campaign.root_org_id}
        found = [_LineOrg(*r) for r in rows(session.connection(), _line_query(), params)]
    by_code = {o.code: o for o in found}
    root = next((o for o in by_code.values() if o.id == ctx.campaign.root_org_id), None)
    if root is None:  # the organisation moved out of the campaign's subtree: no approver
        return []
    return [
        by_code[c]
        for c in reversed(codes)
        if c in by_code and by_code[c].path.startswith(root.path)
    ]

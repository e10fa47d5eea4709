"""A command's effects on a run, collected while it decides and sent together by `apply`.

A command (request, approve, return, withdraw, extend, send back, record evidence) decides on
what it loaded, then has up to six effects: the conditional update of its request, a decision,
the resolution of notices, the compare-and-set on the run (which also moves the head of the
run's audit stream, `Run.audit_seq`/`audit_hash`), its audit events and its outbox rows.
On PostgreSQL they go in one statement (data-modifying CTEs, one round trip); elsewhere as a
few statements in the caller's transaction. Either way they commit together or not at all, and
a lost race (the run or the request changed since it was read, a decision or event already
taken) is a ConcurrentUpdate (409) with nothing applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, func, insert, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql import Executable
from sqlmodel import Session, col

from states import audit, inbox
from states.errors import ConcurrentUpdate
from states.models import AuditEvent, Decision, OutboxMessage, Request, RequestStatus, Run


@dataclass
class Writes:
    """What one command will write; `apply` sends it."""

    run_values: dict[str, Any] | None = None  # the compare-and-set on the run (None: none)
    request: tuple[Request, dict[str, Any]] | None = None  # still pending at its step
    decision: dict[str, Any] | None = None
    resolve: dict[str, Any] = field(default_factory=dict)  # inbox.resolve_statement arguments
    events: list[tuple[str, int | None, dict[str, Any]]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def clear(self) -> None:
        self.run_values, self.request, self.decision = None, None, None
        self.resolve, self.events, self.outbox = {}, [], []

    @property
    def empty(self) -> bool:
        return not (
            self.run_values is not None
            or self.request
            or self.decision
            or self.resolve
            or self.events
            or self.outbox
        )


def request_update(req: Request, values: dict[str, Any]) -> Any:
    return (
        update(Request)
        .where(
            col(Request.id) == req.id,
            col(Request.status) == RequestStatus.PENDING,
            col(Request.step) == req.step,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def run_update(run: Run, values: dict[str, Any], *, cas: bool) -> Any:
    """The run's update: with `cas`, only if nobody changed it (version, audit head) since."""
    where = [col(Run.id) == run.id, col(Run.audit_seq) == run.audit_seq]
    if cas:
        where.append(col(Run.version) == run.version)
    return update(Run).where(*where).values(**values).execution_options(synchronize_session=False)


#: One statement of an `apply`: its name, the statement, and the 409 if it must touch exactly
#: one row but did not (None: any row count is fine).
Step = tuple[str, Any, ConcurrentUpdate | None]


def _plan(run: Run, w: Writes, now: datetime) -> tuple[list[Step], dict[str, Any]]:
    steps: list[Step] = []
    if w.request is not None:
        req, values = w.request
        lost = ConcurrentUpdate("该申请刚被他人处理，请刷新后重试", details={"request_id": req.id})
        steps.append(("w_request", request_update(req, values), lost))
    if w.decision is not None:
        steps.append(("w_decision", insert(Decision).values(**w.decision), None))
    if w.resolve:
        steps.append(("w_inbox", inbox.resolve_statement(now=now, **w.resolve), None))
    values = dict(w.run_values or {})
    if w.run_values is not None:
        values["version"] = run.version + 1
    rows = audit.chain_rows(
        (run.audit_seq, run.audit_hash), stream=f"run:{run.id}", events=w.events, run_id=run.id
    )
    if rows:
        values.update(audit_seq=rows[-1]["seq"], audit_hash=rows[-1]["hash"])
    if values:
        lost = ConcurrentUpdate("该创建进度刚被他人更新，请刷新后重试", details={"run_id": run.id})
        steps.append(("w_run", run_update(run, values, cas=w.run_values is not None), lost))
    if rows:
        steps.append(("w_audit", insert(AuditEvent).values(rows), None))
    if w.outbox:
        steps.append(("w_outbox", insert(OutboxMessage).values(w.outbox), None))
    return steps, values


def apply(session: Session, run: Run, w: Writes, now: datetime) -> None:
    """Send the writes (one round trip on PostgreSQL); mirror them on the loaded objects."""
    if w.empty:
        return
    steps, values = _plan(run, w, now)
    try:
        if session.get_bind().dialect.name == "postgresql":
            _send_one(session, steps)
        else:
            _send_each(session, steps)
    except IntegrityError as exc:  # a decision, an event or a notice taken by a racing writer
        raise ConcurrentUpdate("该事项刚被他人处理，请刷新后重试") from exc
    for key, value in values.items():  # committed values, without marking anything dirty
        set_committed_value(run, key, value)
    if w.request is not None:
        for key, value in w.request[1].items():
            set_committed_value(w.request[0], key, value)
    w.clear()


def _send_each(session: Session, steps: list[Step]) -> None:
    for _name, stmt, lost in steps:
        result = session.execute(stmt)
        if lost is not None and cast(CursorResult[Any], result).rowcount != 1:
            raise lost


def _send_one(session: Session, steps: list[Step]) -> None:
    """Every write as a data-modifying CTE of one SELECT that counts each one's rows."""
    counts = [
        select(func.count())
        .select_from(stmt.returning(literal(1).label("one")).cte(name))
        .scalar_subquery()
        for name, stmt, _lost in steps
    ]
    row = session.execute(cast(Executable, select(*counts))).one()
    for (_name, _stmt, lost), n in zip(steps, row, strict=True):
        if lost is not None and n != 1:
            raise lost

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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, func, insert, literal_column, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable
from sqlmodel import Session

from states import audit, inbox
from states.errors import ConcurrentUpdate
from states.fastsql import Prepared, mirror, rows
from states.models import (
    AuditEvent,
    Decision,
    InboxItem,
    OutboxMessage,
    Request,
    RequestStatus,
    Run,
)


@dataclass
class Writes:
    """What one command will write; `apply` sends it."""

    new_request: dict[str, Any] | None = None  # a request to insert, its id already drawn
    run_values: dict[str, Any] | None = None  # the compare-and-set on the run (None: none)
    request: tuple[Request, dict[str, Any]] | None = None  # still pending at its step
    decision: dict[str, Any] | None = None
    resolve: dict[str, Any] = field(default_factory=dict)  # inbox.resolve_statement arguments
    events: list[tuple[str, int | None, dict[str, Any]]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)

    def clear(self) -> None:
        self.new_request, self.run_values, self.request, self.decision = None, None, None, None
        self.resolve, self.events, self.outbox = {}, [], []

    @property
    def empty(self) -> bool:
        return not (
            self.new_request
            or self.run_values is not None
            or self.request
            or self.decision
            or self.resolve
            or self.events
            or self.outbox
        )


def _bind(table: Any, prefix: str, keys: Sequence[str]) -> dict[str, Any]:
    """`{column: bindparam(prefix + column)}` typed like the column (JSON, UTC timestamps)."""
    return {k: bindparam(prefix + k, type_=table.c[k].type) for k in keys}


def _keyed(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {prefix + k: v for k, v in values.items()}


#: The statements, built once per shape (which columns, which checks) and reused, so that
#: SQLAlchemy neither rebuilds them nor recomputes their cache keys on every command.
_BUILT: dict[tuple[Any, ...], Any] = {}


def _built(key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
    stmt = _BUILT.get(key)
    if stmt is None:
        stmt = _BUILT[key] = build()
    return stmt


def _request_step(req: Request, values: dict[str, Any]) -> Step:
    keys = tuple(sorted(values))
    t = Request.__table__  # type: ignore[attr-defined]

    def build() -> Any:
        return (
            update(t)
            .where(t.c.id == bindparam("rq_id"), t.c.status == bindparam("rq_pending"))
            .where(t.c.step == bindparam("rq_step"))
            .values(**_bind(t, "rq_v_", keys))
        )

    params = {"rq_id": req.id, "rq_pending": RequestStatus.PENDING, "rq_step": req.step}
    lost = ConcurrentUpdate("该申请刚被他人处理，请刷新后重试", details={"request_id": req.id})
    return (
        "w_request",
        _built(("request", keys), build),
        {**params, **_keyed("rq_v_", values)},
        lost,
    )


def _run_step(run: Run, values: dict[str, Any], cas: bool) -> Step:
    """The run's update: with `cas`, only if nobody changed it (version, audit head) since."""
    keys = tuple(sorted(values))
    t = Run.__table__  # type: ignore[attr-defined]

    def build() -> Any:
        where = [t.c.id == bindparam("u_id"), t.c.audit_seq == bindparam("u_seq")]
        if cas:
            where.append(t.c.version == bindparam("u_version"))
        return update(t).where(*where).values(**_bind(t, "u_v_", keys))

    params = {"u_id": run.id, "u_seq": run.audit_seq, "u_version": run.version}
    if not cas:
        del params["u_version"]
    lost = ConcurrentUpdate("该创建进度刚被他人更新，请刷新后重试", details={"run_id": run.id})
    return "w_run", _built(("run", keys, cas), build), {**params, **_keyed("u_v_", values)}, lost


def _insert_step(name: str, model: Any, rows: list[dict[str, Any]]) -> Step:
    """One row: a statement built once; several (an evidence batch): multi-VALUES."""
    t = model.__table__
    if len(rows) > 1:
        return name, insert(t).values(rows), {}, None
    keys = tuple(sorted(rows[0]))
    stmt = _built((name, keys), lambda: insert(t).values(**_bind(t, name + "_", keys)))
    return name, stmt, _keyed(name + "_", rows[0]), None


_INBOX = InboxItem.__table__  # type: ignore[attr-defined]


def _inbox_step(now: datetime, resolve: dict[str, Any]) -> Step:
    shape = (resolve.get("request_id") is not None, resolve.get("run_id") is not None)
    kinds = tuple(resolve.get("run_kinds", inbox.STAGE_KINDS))

    def build() -> Any:
        return inbox.resolve_statement(
            now=bindparam("i_now", type_=_INBOX.c.resolved_at.type),
            request_id=bindparam("i_request") if shape[0] else None,
            run_id=bindparam("i_run") if shape[1] else None,
            run_kinds=kinds,
        )

    params = {"i_now": now, "i_request": resolve.get("request_id"), "i_run": resolve.get("run_id")}
    params = {k: v for k, v in params.items() if v is not None}
    return "w_inbox", _built(("inbox", shape, kinds), build), params, None


#: One statement of an `apply`: its name, the statement, its parameters, and the 409 if it
#: must touch exactly one row but did not (None: any row count is fine).
Step = tuple[str, Any, dict[str, Any], ConcurrentUpdate | None]


def _plan(run: Run, w: Writes, now: datetime) -> tuple[list[Step], dict[str, Any]]:
    steps: list[Step] = []
    if w.new_request is not None:
        steps.append(_insert_step("w_new_request", Request, [w.new_request]))
    if w.request is not None:
        steps.append(_request_step(*w.request))
    if w.decision is not None:
        steps.append(_insert_step("w_decision", Decision, [w.decision]))
    if w.resolve:
        steps.append(_inbox_step(now, w.resolve))
    values = dict(w.run_values or {})
    if w.run_values is not None:
        values["version"] = run.version + 1
    rows = audit.chain_rows(
        (run.audit_seq, run.audit_hash), stream=f"run:{run.id}", events=w.events, run_id=run.id
    )
    if rows:
        values.update(audit_seq=rows[-1]["seq"], audit_hash=rows[-1]["hash"])
    if values:
        steps.append(_run_step(run, values, cas=w.run_values is not None))
    if rows:
        steps.append(_insert_step("w_audit", AuditEvent, rows))
    if w.outbox:
        steps.append(_insert_step("w_outbox", OutboxMessage, w.outbox))
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
    mirror(run, values)  # committed values, without marking anything dirty
    if w.request is not None:
        mirror(*w.request)
    w.clear()


def _send_each(session: Session, steps: list[Step]) -> None:
    conn = session.connection()  # Core statements: no ORM execution around them
    for _name, stmt, params, lost in steps:
        result = conn.execute(stmt, params or None)
        if lost is not None and cast(CursorResult[Any], result).rowcount != 1:
            raise lost


#: The combined statements, one per shape of steps, compiled once (`states.fastsql`).
_COMBINED: dict[tuple[int, ...], Prepared] = {}


def _combined(steps: list[Step]) -> Any:
    """Every write as a data-modifying CTE of one SELECT that counts each one's rows."""
    counts = [
        select(func.count())
        .select_from(stmt.returning(literal_column("1")).cte(name))
        .scalar_subquery()
        for name, stmt, _params, _lost in steps
    ]
    return select(*counts)


def _send_one(session: Session, steps: list[Step]) -> None:
    params = {k: v for _n, _s, p, _l in steps for k, v in p.items()}
    if any(not params for _n, _s, params, _l in steps):  # a multi-row insert: built this once
        stmt = _combined(steps)
        row = session.connection().execute(cast(Executable, stmt), params).one()
    else:
        key = tuple(id(s) for _n, s, _p, _l in steps)
        prepared = _COMBINED.get(key) or _COMBINED.setdefault(key, Prepared(_combined(steps)))
        (row,) = rows(session.connection(), prepared, params)
    for (_name, _stmt, _params, lost), n in zip(steps, row, strict=True):
        if lost is not None and n != 1:
            raise lost

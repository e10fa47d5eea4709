"""Statements built once, compiled once, and sent straight to the driver on PostgreSQL.

On the command path SQLAlchemy's execution machinery (the statement's cache key, the compiled
cache lookup, an execution context and result metadata per call) costs several times what the
driver itself spends on a round trip. A `Prepared` statement is compiled once per dialect; on
PostgreSQL it runs on the psycopg cursor of the caller's own connection, so in the caller's
transaction, with its parameters converted by the statement's own bind processors and its
results by its result processors. The engine's cursor events still fire, and a driver error
goes through SQLAlchemy's own handling: it is wrapped (IntegrityError, OperationalError …)
and a connection the server dropped is invalidated with its pool, as for any statement.
Elsewhere (SQLite), and for a statement whose columns take Python-side defaults, it runs
through SQLAlchemy unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.base import instance_state
from sqlalchemy.sql import Executable
from sqlalchemy.sql.functions import FunctionElement

Processor = Callable[[Any], Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    defaults: dict[str, Any]  # every bind by name: a literal's value, else None
    binds: tuple[tuple[str, Processor], ...]
    results: tuple[tuple[int, Processor], ...]


def _compile(stmt: Any, dialect: Dialect) -> _Compiled | None:
    """The statement compiled for `dialect`; None if it must go through SQLAlchemy."""
    c = stmt.compile(dialect=dialect)
    if "POSTCOMPILE" in c.string:  # an IN list: rendered now if it is a constant's
        if any(b.expanding and b.callable is None and b.value is None for b in c.binds.values()):
            return None  # a list given per call: SQLAlchemy expands it
        unset = {k: None for k, b in c.binds.items() if b.required}  # given per call
        rendered = stmt.params(unset) if unset else stmt
        c = rendered.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    if c.insert_prefetch or c.update_prefetch:
        return None  # Python-side column defaults: SQLAlchemy computes them
    if c.escaped_bind_names:
        return None
    binds = tuple(c._bind_processors.items())
    results = tuple(
        (i, proc)
        for i, rc in enumerate(c._result_columns)
        if (proc := rc.type._cached_result_processor(dialect, None)) is not None
    )
    return _Compiled(c.string, dict(c.construct_params(_check=False)), binds, results)


class Prepared:
    """A Core statement, compiled once per process for PostgreSQL (run it with `rows`).

    `per_dialect(name)`, if given, builds the statement for a dialect instead (for example
    `= ANY(array)` on PostgreSQL where SQLite needs an expanding IN list: `in_list`)."""

    __slots__ = ("_pg", "_ready", "per_dialect", "stmt")

    def __init__(self, stmt: Any, per_dialect: Callable[[str], Any] | None = None) -> None:
        self.stmt = stmt
        self.per_dialect = per_dialect
        self._pg: _Compiled | None = None
        self._ready = False

    def statement(self, dialect: str) -> Any:
        return self.per_dialect(dialect) if self.per_dialect else self.stmt

    def compiled(self, dialect: Dialect) -> _Compiled | None:
        if not self._ready:
            self._pg, self._ready = _compile(self.statement(dialect.name), dialect), True
        return self._pg


def in_list(column: Any, name: str, dialect: str) -> Any:
    """`column` is one of the values given as list parameter `name`: one array parameter on
    PostgreSQL (so the statement compiles once), an expanding IN list elsewhere."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(column.type)))
    return column.in_(bindparam(name, expanding=True))


def _params(c: _Compiled, params: Mapping[str, Any]) -> dict[str, Any]:
    p = c.defaults.copy()
    p.update(params)
    for key, proc in c.binds:
        p[key] = proc(p[key])
    return p


def _send(conn: Connection, c: _Compiled, params: Mapping[str, Any]) -> Any:
    """Execute on the connection's psycopg cursor, firing the engine's cursor events."""
    p = _params(c, params)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    events = conn._has_events or conn.engine._has_events
    try:
        if events:
            for fn in conn.dispatch.before_cursor_execute:
                fn(conn, cursor, c.sql, p, None, False)
        cursor.execute(c.sql, p)
        if events:
            for fn in conn.dispatch.after_cursor_execute:
                fn(conn, cursor, c.sql, p, None, False)
    except Exception as exc:
        conn._handle_dbapi_exception(exc, c.sql, p, cursor, None)
    return cursor


def _direct(conn: Connection, prepared: Prepared) -> _Compiled | None:
    if conn.dialect.name != "postgresql":
        return None
    return prepared.compiled(conn.dialect)


def rows(conn: Connection, prepared: Prepared, params: Mapping[str, Any]) -> Sequence[Any]:
    """The statement's result rows (tuples, or rows indexable like them)."""
    c = _direct(conn, prepared)
    if c is None:
        stmt = prepared.statement(conn.dialect.name)
        return conn.execute(cast(Executable, stmt), dict(params)).all()
    cursor = _send(conn, c, params)
    try:
        got = cursor.fetchall()
    except Exception as exc:
        conn._handle_dbapi_exception(exc, c.sql, params, cursor, None)
    finally:
        cursor.close()
    if not c.results or not got:
        return cast(Sequence[Any], got)
    return [_processed(row, c.results) for row in got]


def _processed(row: tuple[Any, ...], results: tuple[tuple[int, Processor], ...]) -> tuple[Any, ...]:
    out = list(row)
    for i, proc in results:
        out[i] = proc(out[i])
    return tuple(out)


def detached(model: type[T], keys: Sequence[str], values: Sequence[Any]) -> T:
    """An instance of the mapped `model` holding `values`, as the ORM would load it, but in no
    session (detached, with its identity key): built in microseconds where ORM loading takes
    a hundred. Writes to it are never flushed; commands send their own statements."""
    manager = model._sa_class_manager  # type: ignore[attr-defined]
    if not manager.mapper.configured:  # as the ORM's first query would (a fresh process)
        configure_mappers()
    obj = manager.new_instance()
    obj.__dict__.update(zip(keys, values, strict=True))
    instance_state(obj).key = (model, (obj.__dict__["id"],), None)
    return cast(T, obj)


class json_rows(FunctionElement[Any]):
    """An aggregate: the group's rows of the given columns as one JSON array of arrays ([]
    when there are none), in the dialect's own JSON functions."""

    type = JSON()
    inherit_cache = True
    name = "json_rows"


@compiles(json_rows, "postgresql")
def _json_rows_pg(element: json_rows, compiler: Any, **kw: Any) -> str:
    args = compiler.process(element.clauses, **kw)
    return f"coalesce(json_agg(json_build_array({args})), '[]'::json)"


@compiles(json_rows)
def _json_rows_sqlite(element: json_rows, compiler: Any, **kw: Any) -> str:
    args = compiler.process(element.clauses, **kw)
    return f"json_group_array(json_array({args}))"


def mirror(obj: Any, values: Mapping[str, Any]) -> None:
    """Show `values` on a loaded object as its committed state (nothing to flush): the
    command sends them with its own statements. A detached object (`detached`) takes them
    as plain attribute values; one in a session through the ORM's `set_committed_value`."""
    if instance_state(obj).session_id is None:
        obj.__dict__.update(values)
        return
    for key, value in values.items():
        set_committed_value(obj, key, value)

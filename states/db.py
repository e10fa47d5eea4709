"""Engines and sessions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, create_engine

from states.config import database_url
from states.errors import DomainError

READ_ONLY = "dangjian_read_only"
T = TypeVar("T")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys and a busy timeout."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's transaction handling begin; pysqlite's own is turned off.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock up front, so two writers queue at once instead of
            # failing at commit; readers (`read_only`) begin deferred and never block anyone.
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # Each server process answers up to 40 requests at once from its thread pool, and a request
    # holds one connection at a time. 20 kept per process covers 32 busy clients spread over
    # the processes of `dangjian serve` with no connection opened under load; a larger burst
    # opens up to 20 more for its duration (DANGJIAN_DB_POOL_SIZE to tune).
    kwargs.setdefault("pool_size", int(os.environ.get("DANGJIAN_DB_POOL_SIZE", "20")))
    kwargs.setdefault("max_overflow", 20)
    # No pre-ping (a round trip before every transaction): a connection the server dropped is
    # found on its first statement instead, the pool discards it and its peers
    # (`connection_invalidated`), and `retry_dead_connection` runs the transaction again.
    return create_engine(url, **kwargs)


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for `url` (default: the configured database)."""
    url = url or database_url()
    engine = _ENGINES.get(url)
    if engine is None:
        with _ENGINES_LOCK:
            engine = _ENGINES.get(url) or _ENGINES.setdefault(url, make_engine(url))
    return engine


#: The process-wide engines by URL (`get_engine`).
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def dispose_engines() -> None:
    """Close the idle pooled connections of the process-wide engines (`get_engine`); they
    connect afresh on next use. For after the database server dropped every connection."""
    for engine in list(_ENGINES.values()):
        engine.dispose()


def read_only(engine: Engine) -> Engine:
    """Return `engine` for reading only: on SQLite its transactions don't take the write lock;
    on PostgreSQL they are READ ONLY transactions (the server refuses any write in them)."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(**{READ_ONLY: True}, postgresql_readonly=True)
    return engine.execution_options(**{READ_ONLY: True})


@contextmanager
def read_session(engine: Engine | None = None) -> Iterator[Session]:
    """Yield a session for reads; it writes nothing.

    On PostgreSQL its transaction is READ ONLY and ends with COMMIT on the driver's connection
    (no ORM flush): a ROLLBACK would make psycopg drop every statement it has prepared on that
    pooled connection, and the next commands on it would be planned afresh. Elsewhere, and
    after an error, it rolls back."""
    with Session(read_only(engine or get_engine()), expire_on_commit=False) as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        _commit_on_driver(session, unless_written=False)  # READ ONLY: nothing to write
        session.rollback()  # the session's own state (nothing left to roll back on PostgreSQL)


_UNWRITTEN = "SELECT pg_current_xact_id_if_assigned() IS NULL"


def _commit_on_driver(session: Session, *, unless_written: bool) -> None:
    """COMMIT the session's PostgreSQL transaction on the driver's connection (no ORM flush),
    keeping the statements psycopg prepared on it (a ROLLBACK drops them all). With
    `unless_written`, only if the transaction wrote nothing (no transaction id assigned)."""
    if session.get_transaction() is None:
        return
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        return
    if unless_written and not conn.exec_driver_sql(_UNWRITTEN).scalar():
        return
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.commit()


@contextmanager
def one_read(engine: Engine) -> Iterator[Connection]:
    """A connection for one read statement: on PostgreSQL in autocommit (one round trip, no
    BEGIN and ROLLBACK around it); elsewhere in a read-only transaction, rolled back."""
    with read_only(engine).connect() as conn:
        if engine.dialect.name == "postgresql":
            yield conn.execution_options(isolation_level="AUTOCOMMIT")
            return
        try:
            yield conn
        finally:
            conn.rollback()


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """Yield a session; commit on success, roll back everything on any error.

    A connection lost during COMMIT is marked (`during_commit`): whether the change landed is
    unknown, so `retry_dead_connection` does not run it again.
    """
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
        except DomainError:
            _end_refused(session)
            raise
        except BaseException:
            session.rollback()
            raise
        try:
            session.commit()
        except BaseException as exc:
            if isinstance(exc, DBAPIError):
                exc.during_commit = True  # type: ignore[attr-defined]
            session.rollback()
            raise


def _end_refused(session: Session) -> None:
    """End a transaction that a command refused (a 403, 404, 409 …). On PostgreSQL, when it
    wrote nothing (no transaction id was assigned), with COMMIT instead of ROLLBACK: a
    ROLLBACK makes psycopg drop every statement it has prepared on the pooled connection.
    Anything written (a write whose checks failed afterwards) is rolled back as always."""
    with suppress(Exception):  # an aborted transaction (a statement failed): roll back below
        _commit_on_driver(session, unless_written=True)
    session.rollback()  # nothing left to roll back after the COMMIT; the session's state


def retry_dead_connection(transaction: Callable[[], T]) -> T:
    """Run `transaction` (a whole unit of work); if the database server dropped its connection
    before COMMIT, run it once more on a fresh one. Nothing of the first attempt was applied
    (its transaction died with the connection). A second loss, or a loss during COMMIT, is
    raised (answered 503)."""
    try:
        return transaction()
    except DBAPIError as exc:
        if not exc.connection_invalidated or getattr(exc, "during_commit", False):
            raise
    return transaction()


def insert_ignoring_conflicts(session: Session, model: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` for `model` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model).on_conflict_do_nothing()

"""Engines and sessions for SQLite (default) and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from states.config import database_url

READ_ONLY = "dangjian_read_only"


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
    # The API serves up to 40 requests at once from its thread pool: keep enough connections
    # open that a burst does not open and close new ones (DANGJIAN_DB_POOL_SIZE to tune).
    kwargs.setdefault("pool_size", int(os.environ.get("DANGJIAN_DB_POOL_SIZE", "10")))
    kwargs.setdefault("max_overflow", 30)
    return create_engine(url, pool_pre_ping=True, **kwargs)


def get_engine(url: str | None = None) -> Engine:
    """Return the process-wide engine for `url` (default: the configured database)."""
    return _cached_engine(url or database_url())


@lru_cache(maxsize=8)
def _cached_engine(url: str) -> Engine:
    return make_engine(url)


def read_only(engine: Engine) -> Engine:
    """Return `engine` for reading only: on SQLite its transactions don't take the write lock."""
    return engine.execution_options(**{READ_ONLY: True})


@contextmanager
def read_session(engine: Engine | None = None) -> Iterator[Session]:
    """Yield a session for reads; it never commits anything."""
    with Session(read_only(engine or get_engine()), expire_on_commit=False) as session:
        try:
            yield session
        finally:
            session.rollback()


@contextmanager
def unit_of_work(engine: Engine | None = None) -> Iterator[Session]:
    """Yield a session; commit on success, roll back everything on any error."""
    with Session(engine or get_engine(), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def insert_ignoring_conflicts(session: Session, model: Any) -> Any:
    """`INSERT … ON CONFLICT DO NOTHING` for `model` in the session's dialect."""
    dialect = session.get_bind().dialect.name
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(model).on_conflict_do_nothing()

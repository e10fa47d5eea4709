"""Killing PostgreSQL backends from a test, as a server restart or an administrator would."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from states.db import dispose_engines


def terminate(url: str, pids: list[int] | None = None) -> None:
    """pg_terminate_backend: the given backends, or every other one of this database.

    The process-wide engines (`states.db.get_engine`, shared by tests that run the CLI in
    process) are then disposed, so only the engines a test holds itself see dead connections.
    """
    admin = create_engine(url, poolclass=NullPool)
    where = "pid = ANY(:pids)" if pids else "datname = current_database()"
    with admin.connect() as conn:
        conn.execute(
            text(
                f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {where}"
                " AND pid <> pg_backend_pid()"
            ),
            {"pids": pids} if pids else {},
        )
    admin.dispose()
    dispose_engines()

"""Killing PostgreSQL backends from a test, as a server restart or an administrator would."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool


def terminate(url: str, pids: list[int] | None = None) -> None:
    """pg_terminate_backend: the given backends, or every other one of this database."""
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

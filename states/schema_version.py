"""Which schema the code ships and which one a database has, without loading Alembic.

The command line checks this before every command that touches the database; Alembic's script
directory costs a fifth of a second to import and read, so the shipped head is found by reading
the `revision` and `down_revision` lines of the migration files. `tests/test_migrations.py`
checks that the answer equals Alembic's own.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

VERSIONS = Path(__file__).resolve().parent / "migrations" / "versions"
_FIELD = re.compile(r'^(revision|down_revision)\s*:[^=]*=\s*["\']([^"\']+)["\']', re.M)


@cache
def shipped_head() -> str | None:
    """The newest revision shipped with the code: the one no other migration revises."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in VERSIONS.glob("*.py"):
        for field, value in _FIELD.findall(path.read_text(encoding="utf-8")):
            (revisions if field == "revision" else revised).add(value)
    heads = sorted(revisions - revised)
    return heads[0] if len(heads) == 1 else None


def database_revision(engine: Engine) -> str | None:
    """The revision recorded in the database, or None when it was never migrated."""
    from sqlalchemy import inspect, text

    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

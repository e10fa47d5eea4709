"""Where the database lives: `DATABASE_URL`, or a SQLite file in the data directory."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = Path(".data")


def data_dir() -> Path:
    """Return the data directory (`DANGJIAN_DATA_DIR`, default `./.data`), creating it."""
    path = Path(os.environ.get("DANGJIAN_DATA_DIR", str(DEFAULT_DATA_DIR))).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def database_url() -> str:
    """Return the SQLAlchemy URL from `DATABASE_URL`, or the default SQLite file."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            # psycopg 3 is the driver we ship; accept the plain libpq form too.
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    return f"sqlite:///{(data_dir() / 'dangjian.db').resolve()}"

"""Test fixtures: every database test runs on SQLite and on a real PostgreSQL.

PostgreSQL: `TEST_DATABASE_URL` if set; else 127.0.0.1:5432 when it answers; else a throwaway
cluster started with the PostgreSQL binaries on this machine. If none works the session fails
loudly: the PostgreSQL half of the suite never skips silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from states.db import make_engine
from states.migrate import upgrade
from tests import pgcluster
from tests.browser import browser, live_world, page, phone  # noqa: F401  (shared browser fixtures)

BACKENDS = ["sqlite", "postgresql"]


def _numeric_only_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    """getaddrinfo for addresses written as numbers (127.1, ::1) only: no test asks DNS."""
    try:
        return socket.getaddrinfo(host, port, *args, **kwargs, flags=socket.AI_NUMERICHOST)
    except socket.gaierror:
        raise socket.gaierror(socket.EAI_NONAME, f"tests resolve no names ({host})") from None


@pytest.fixture(autouse=True)
def private_data_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Files a test stores (attachments) go to a temporary data directory, never `./.data`."""
    monkeypatch.setenv("DANGJIAN_DATA_DIR", str(tmp_path_factory.mktemp("data")))


@pytest.fixture(autouse=True)
def outbound_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in robots listen on 127.0.0.1, which states/outbound.py refuses by default:
    allow it for the suite (tests of the default policy delete the variable), and resolve no
    host name through DNS (a test never sends a packet off this machine)."""
    from states import outbound

    monkeypatch.setenv(outbound.ALLOW_ENV, "127.0.0.1")
    monkeypatch.setattr(outbound, "getaddrinfo", _numeric_only_getaddrinfo)


@pytest.fixture(scope="session")
def pg_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Return an admin URL of a reachable PostgreSQL server (started if need be)."""
    with pgcluster.server(tmp_path_factory.mktemp("pgcluster")) as url:
        yield url


@pytest.fixture(scope="session")
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """Create a database for this test session, migrated to head; drop it afterwards."""
    name = f"dj_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    raw = engine.raw_connection()  # outside any transaction: a checkpoint can't run inside one
    try:
        raw.driver_connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[union-attr]
    finally:
        raw.close()
    engine.dispose()
    return path


def _truncate_all(engine: Engine) -> None:
    with engine.begin() as conn:
        names = conn.execute(
            text(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            )
        ).scalars()
        tables = ", ".join(f'"{n}"' for n in names)
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test: 'sqlite' or 'postgresql'."""
    return str(request.param)


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Return the URL of an empty, migrated database of the test's backend."""
    if backend == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "test.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("pg_url")
    engine = make_engine(url)
    _truncate_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test's empty database."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session for setting up and checking data; tests commit explicitly."""
    with Session(engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def pg_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """An engine on an empty PostgreSQL database (for tests of row locks and concurrency)."""
    url: str = request.getfixturevalue("pg_url")
    eng = make_engine(url)
    _truncate_all(eng)
    yield eng
    eng.dispose()


def pytest_report_header(config: pytest.Config) -> str:
    return (
        "databases: SQLite and PostgreSQL ("
        + os.environ.get("TEST_DATABASE_URL", "127.0.0.1:5432 or a throwaway cluster")
        + ")"
    )


@pytest.fixture
def world(engine: Engine) -> Iterator[object]:
    """The API test world (tests/api_world.py) on the test's database."""
    from tests.api_world import build_world

    w = build_world(engine)
    with w.client:
        yield w


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Say at the end of the run when the browser tests were skipped (see tests/browser.py)."""
    plumbing = sys.modules.get("tests.browser")
    if plumbing is not None:
        plumbing.pytest_terminal_summary(terminalreporter, exitstatus, config)

"""Find a PostgreSQL server for the tests, or start a throwaway cluster; fail loudly if neither."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _answers(url: str) -> bool:
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(dsn, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@contextmanager
def _throwaway(workdir: Path) -> Iterator[str]:
    bindir = _bin_dir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server answers and no initdb binary was found")
    data = workdir / "data"
    port = _free_port()
    run_as: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        shutil.chown(workdir, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
    )
    opts = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )


@contextmanager
def server(workdir: Path) -> Iterator[str]:
    """Yield an admin URL for a PostgreSQL server; raise if none can be had."""
    url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_URL
    if _answers(url):
        yield url
        return
    if os.environ.get("TEST_DATABASE_URL"):
        raise RuntimeError(f"TEST_DATABASE_URL does not answer: {url}")
    with _throwaway(workdir) as started:
        if not _answers(started):
            raise RuntimeError("started a throwaway PostgreSQL cluster but it does not answer")
        yield started

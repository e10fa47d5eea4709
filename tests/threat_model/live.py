"""A real server process for the threat-model probes: `uvicorn --factory api.app:create_app` on a
loopback port, on a migrated SQLite copy with an organiser of B, and a `/healthz` poller.

Probes that time the server's answers need it in its own process: clients in the test process
then share nothing with it, as in production.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlmodel import Session

from states.db import make_engine
from states.models import Role
from states.tokens import issue_token
from tests.browser import free_port
from tests.factories import make_tree, make_user

ROOT = Path(__file__).resolve().parents[2]
UVICORN = [sys.executable, "-m", "uvicorn", "--factory", "api.app:create_app"]
UVICORN += ["--host", "127.0.0.1", "--log-level", "warning"]


@dataclass
class Server:
    url: str
    token: str
    proc: subprocess.Popen[bytes]
    log: Path
    org_id: int  # B, the organiser's organisation

    def peak_rss(self) -> int:
        """The server process's peak resident set size in bytes (VmHWM)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _seed(url: str) -> tuple[str, int]:
    engine = make_engine(url)
    with Session(engine) as s:
        orgs = make_tree(s)
        actor = make_user(s, "org_b", ("B", Role.ORGANISER))
        token = issue_token(s, actor.user_id).token
        org_id = int(orgs["B"].id or 0)
        s.commit()
    engine.dispose()
    return token, org_id


def serve(sqlite_template: Path, folder: Path) -> Iterator[Server]:
    """Start the server on a copy of the migrated SQLite template; stop it afterwards."""
    db = folder / "server.db"
    shutil.copy(sqlite_template, db)
    url = f"sqlite:///{db}"
    token, org_id = _seed(url)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url, "PYTHONUNBUFFERED": "1"}
    env.pop("DANGJIAN_IMPORT_MAX_ROWS", None)
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*UVICORN, "--port", str(port)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, proc, log)
        yield Server(base, token, proc, log, org_id)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_until_up(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(600):  # up to 60 s to start (not a timed assertion)
        if proc.poll() is not None:
            raise RuntimeError("测试服务器退出：" + log.read_text(errors="replace"))
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("测试服务器未能启动：" + log.read_text(errors="replace"))


@dataclass
class Poller:
    """Polls `path` every 100 ms in a thread; records each answer's latency."""

    url: str
    path: str = "/healthz"
    headers: dict[str, str] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=10, headers=self.headers) as client:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    ok = client.get(self.url + self.path).status_code == 200
                except httpx.HTTPError as exc:
                    ok = False
                    self.failures.append(repr(exc))
                self.latencies.append(time.monotonic() - started)
                if not ok and not self.failures:
                    self.failures.append(f"{self.path} did not answer 200")
                self.stop.wait(0.1)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread

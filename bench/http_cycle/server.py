"""The app under test, in a subprocess per `--workers` variant."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.http_cycle.constants import REPO, RESULTS
from bench.http_cycle.cpu import _cmdline, _proc_table


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """The app (`api.app:create_app`, factory) in a subprocess, with DATABASE_URL set.

    `spec`: the number of worker processes, plain (`uvicorn --workers N`), or with `+nodelay`
    (uvicorn's CLI with TCP_NODELAY on accepted connections) or `+reuseport` (N single-process
    servers on SO_REUSEPORT sockets); see bench/serve.py.
    """

    def __init__(self, url: str, spec: str) -> None:
        self.spec = spec
        self.workers = int(spec.split("+")[0])
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        uvicorn_args = [
            "api.app:create_app", "--factory", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", str(self.workers), "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip
        if spec.endswith("+serve"):  # the shipped server: `dangjian serve --workers N`
            where = ["--host", "127.0.0.1", "--port", str(self.port)]
            args = ["-m", "api.cli", "serve", *where, "--workers", str(self.workers)]
            args.append("--no-access-log")
        elif spec.endswith("+reuseport"):
            where = ["127.0.0.1", str(self.port), str(self.workers)]
            args = ["-m", "bench.serve", "reuseport", *where]
        elif spec.endswith("+nodelay"):
            args = ["-m", "bench.serve", "nodelay", *uvicorn_args]
        else:
            args = ["-m", "uvicorn", *uvicorn_args]
        self.cmd = [sys.executable, *args]
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.log = (RESULTS / f"http_server_w{spec.replace('+', '_')}.log").open("w")
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=REPO,
            env={**os.environ, "DATABASE_URL": url},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def describe(self) -> str:
        return "python " + shlex.join(self.cmd[1:]).replace(str(self.port), "<port>")

    def listeners(self) -> int:
        """Listening TCP sockets on our port (one per process with SO_REUSEPORT)."""
        port = f":{self.port:04X}"
        rows = [ln.split() for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]]
        return sum(1 for r in rows if r[1].endswith(port) and r[3] == "0A")

    def wait_ready(self, timeout: float = 240) -> None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"server exited with {self.proc.returncode}; see {self.log.name}"
                )
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1, trust_env=False).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"server on {self.base} not ready after {timeout}s")
        while self.workers > 1 and len(self.worker_pids()) < self.workers:
            time.sleep(0.2)
        if self.spec.endswith(("+reuseport", "+serve")):  # every process listening first
            while self.listeners() < self.workers:
                time.sleep(0.2)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests (the launcher's children when workers > 1)."""
        if self.workers == 1 and not self.spec.endswith(("+reuseport", "+serve")):
            return [self.proc.pid]
        kids = [pid for pid, proc in _proc_table().items() if proc.ppid == self.proc.pid]
        return [pid for pid in kids if b"spawn_main" in _cmdline(pid)]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

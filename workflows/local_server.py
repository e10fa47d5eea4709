"""A managed local Prefect server: `prefect server start` as a child process on 127.0.0.1.

Prefect's ephemeral mode (no `PREFECT_API_URL`) has no scheduler, so `dangjian worker` without a
configured server starts a real one: SQLite in `<data dir>/prefect`, analytics off, on
`DANGJIAN_PREFECT_PORT` (default 4200, or any free port when 4200 is taken and the port was not
set explicitly). The child gets its own session (Ctrl+C in the terminal reaches only us, and we
stop it after the runner) and, on Linux, a parent-death signal, so it never outlives us: not on
SIGINT, not on SIGTERM, not even when we are killed. A lock file keeps a second managed server off
the same SQLite database.

Nothing here imports Prefect: the server runs in its own process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from states.errors import Conflict, DomainError, InvalidInput
from workflows.settings import server_env

DEFAULT_PORT = 4200
HOST = "127.0.0.1"


def prefect_home() -> Path:
    """`<data dir>/prefect`: the managed server's SQLite database, logs and lock file."""
    from states.config import data_dir

    path = data_dir() / "prefect"
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Like the server itself: connections in TIME_WAIT do not make the port busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_port(host: str = HOST, env: dict[str, str] | None = None) -> int:
    """`DANGJIAN_PREFECT_PORT` if set (it must be free); else 4200, or a free port if taken."""
    raw = (env if env is not None else os.environ).get("DANGJIAN_PREFECT_PORT", "").strip()
    if raw:
        try:
            port = int(raw)
        except ValueError:
            raise InvalidInput(f"DANGJIAN_PREFECT_PORT 应为端口号，而不是「{raw}」") from None
        if not 0 < port < 65536:
            raise InvalidInput(f"DANGJIAN_PREFECT_PORT 超出范围：{port}")
        if not port_free(host, port):
            raise Conflict(
                f"端口 {port} 已被占用（DANGJIAN_PREFECT_PORT）；换一个端口，"
                "或用 PREFECT_API_URL 指向已有的 Prefect 服务器"
            )
        return port
    return DEFAULT_PORT if port_free(host, DEFAULT_PORT) else free_port(host)


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: have the kernel send SIGTERM to the child when its parent dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class LocalServer:
    """One `prefect server start` child process; use as a context manager."""

    def __init__(self, home: Path | None = None, host: str = HOST, port: int | None = None) -> None:
        self.home = (home or prefect_home()).resolve()
        self.home.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port if port is not None else choose_port(host)
        self.log_path = self.home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self._started_at = 0.0
        self._lock: IO[str] | None = None
        self._log: IO[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    # --- life cycle ---------------------------------------------------------------------------

    def _take_lock(self) -> None:
        lock = (self.home / "server.lock").open("a+", encoding="utf-8")
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            self._lock = lock
            return
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.seek(0)
            holder = lock.read().strip()
            lock.close()
            raise Conflict(
                f"另一个 dangjian worker 正在使用这个数据目录的 Prefect 服务器（{holder or '未知进程'}）；"
                f"先停止它，或换用 DANGJIAN_DATA_DIR / PREFECT_API_URL"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        self._lock = lock

    def start(self) -> None:
        """Start the child (returns at once; `wait_ready` waits for its health endpoint)."""
        if self.process is not None:
            return
        self._take_lock()
        env = server_env(self.home, self.host, self.port)
        self._log = self.log_path.open("ab")
        self._log.write(
            f"\n--- dangjian: starting Prefect server on port {self.port} ---\n".encode()
        )
        self._log.flush()
        kwargs: dict[str, Any] = {}
        if sys.platform.startswith("linux"):
            kwargs["preexec_fn"] = die_with_parent
        self._started_at = time.monotonic()
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    self.host,
                    "--port",
                    str(self.port),
                    "--analytics-off",
                    "--no-background",
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            self._release()
            raise DomainError(f"无法启动 Prefect 服务器：{exc}") from exc

    def wait_ready(
        self, timeout: float | None = None, tick: Callable[[float], None] | None = None
    ) -> float:
        """Wait until `/api/health` answers; return the seconds since `start()`."""
        if self.process is None:
            self.start()
        assert self.process is not None
        if timeout is None:
            timeout = float(os.environ.get("DANGJIAN_PREFECT_START_TIMEOUT", "180"))
        deadline = self._started_at + timeout
        last_tick = time.monotonic()
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    self._release()
                    raise DomainError(
                        f"Prefect 服务器启动失败（退出码 {code}）。日志 {self.log_path} 的最后几行：\n"
                        + self.log_tail()
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.api_url}/health").status_code == 200:
                        break
                now = time.monotonic()
                if now > deadline:
                    self.stop()
                    raise DomainError(
                        f"Prefect 服务器 {timeout:.0f} 秒内没有就绪（可用 DANGJIAN_PREFECT_START_TIMEOUT "
                        f"延长）。日志 {self.log_path} 的最后几行：\n" + self.log_tail()
                    )
                if tick is not None and now - last_tick >= 5:
                    last_tick = now
                    tick(now - self._started_at)
                time.sleep(0.2)
        self.startup_seconds = time.monotonic() - self._started_at
        return self.startup_seconds

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the child's process group, then SIGKILL after `timeout`; idempotent."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self._release()

    def _release(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._lock is not None:
            self._lock.close()  # closing the file drops the flock
            self._lock = None

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- diagnostics --------------------------------------------------------------------------

    def rss_mb(self) -> float | None:
        """Resident memory of the server process in MB (Linux `/proc`), or None."""
        if self.process is None:
            return None
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "（无日志）"
        return "\n".join(text.rstrip().splitlines()[-lines:])

"""py-spy profile of the single-process server, summarised by part and by package."""

from __future__ import annotations

import re
import shlex
import subprocess
import sysconfig
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.http_cycle.constants import PROFILE_RAW, REPO
from bench.http_cycle.cpu import Meter
from bench.http_cycle.load import measure_http
from bench.http_cycle.server import Server
from bench.http_cycle.world import Target

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")
#: (label, function-name regex or None, file regex): a sample counts if any frame matches.
INCLUSIVE = [
    ("POST …/requests endpoint (api/v1/runs.py request_advance)", r"request_advance$", r"^api/v1/runs\.py"),
    ("POST …/approve endpoint (api/v1/requests.py approve)", r"approve$", r"^api/v1/requests\.py"),
    ("bearer auth dependency (token → Actor, own session)", r"_authenticated$", r"^api/security\.py"),
    ("states.runs.request_advance", r"request_advance$", r"^states/runs\.py"),
    ("states.runs.approve", r"approve$", r"^states/runs\.py"),
    ("response bodies (api/v1/convert.py requests_out)", r"requests_out$", r"^api/v1/convert\.py"),
    ("audit hash chain (states/audit.py append)", r"append$", r"^states/audit\.py"),
    ("audit event_hash (canonical JSON + SHA-256)", r"event_hash$", r"^states/audit\.py"),
    ("requirement checks (states/requirements.py)", None, r"^states/requirements\.py"),
    ("Session.commit (flush + COMMIT)", r"commit$", r"^sqlalchemy/orm/session\.py"),
    ("Session.close / rollback (read sessions)", r"(close|rollback)$", r"^sqlalchemy/orm/session\.py"),
    ("SQLAlchemy, all of it", None, r"^sqlalchemy/"),
    ("SQLAlchemy ORM (sqlalchemy/orm)", None, r"^sqlalchemy/orm/"),
    ("SQLAlchemy Core (sqlalchemy/sql: cache keys, coercion, compile)", None, r"^sqlalchemy/sql/"),
    ("SQLAlchemy engine (sqlalchemy/engine: execute, result rows)", None, r"^sqlalchemy/engine/"),
    ("connection pool checkout/checkin + pre-ping", None, r"^sqlalchemy/pool/"),
    ("psycopg (Python side of the driver)", None, r"^psycopg/"),
    ("pydantic (validation + serialisation)", None, r"^pydantic"),
    ("fastapi jsonable_encoder", r"jsonable_encoder$", r"^fastapi/encoders\.py"),
    ("FastAPI dependency solving", r"solve_dependencies$", r"^fastapi/dependencies/"),
    ("code run in anyio worker threads (sync routes, dependencies)", None, r"^anyio/"),
    ("thread wake-ups (threading.Condition.notify)", r"notify$", r"^threading\.py"),
    ("HTTP protocol (uvicorn + h11)", None, r"^(uvicorn|h11)/"),
]  # fmt: skip


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for frame in stack.split(";"):
        m = FRAME.match(frame)
        func, path = (m["func"], m["file"]) if m else (frame, "")
        if "site-packages/" in path:
            path = path.split("site-packages/", 1)[1]
        elif path.startswith(str(REPO) + "/"):
            path = path[len(str(REPO)) + 1 :]
        out.append((func, path))
    return out


def _third_party() -> set[str]:
    names = {"api", "states", "bench"}
    site = Path(sysconfig.get_paths()["purelib"])
    for p in site.iterdir():
        if p.suffix not in (".dist-info", ".pth") and not p.name.startswith("_"):
            names.add(p.name.removesuffix(".py").split(".")[0])
    return names - {"__pycache__"}


def _owner(path: str, third: set[str]) -> str | None:
    """A package-level label for a third-party or project file; None for the stdlib."""
    parts = path.split("/")
    top = parts[0].removesuffix(".py")
    if top not in third:
        return None
    if top in ("api", "states"):
        return path.removesuffix(".py").replace("/", ".")
    if top == "sqlalchemy" and len(parts) > 2:
        return f"sqlalchemy.{parts[1]}"
    return top


def summarize_profile(path: Path, rate: int, seconds: float) -> dict[str, Any]:
    """Inclusive shares of named parts, and exclusive time by package, from py-spy raw output."""
    stacks: list[tuple[list[tuple[str, str]], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((_frames(stack), int(count)))
    total = sum(n for _, n in stacks) or 1
    inclusive = []
    for label, fn, fl in INCLUSIVE:
        hit = sum(
            n
            for frames, n in stacks
            if any(re.search(fl, p) and (fn is None or re.search(fn, f)) for f, p in frames)
        )
        inclusive.append({"part": label, "pct": round(100 * hit / total, 1)})
    third = _third_party()
    owners: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        owner = next((o for _, p in reversed(frames) if (o := _owner(p, third))), None)
        if owner is None:
            leaf = frames[-1][1].split("/")[0].removesuffix(".py") if frames else "?"
            owner = f"stdlib {leaf or '?'}"
        owners[owner] += n
        func, p = frames[-1]
        leaves[f"{func} ({p})"] += n
    return {
        "samples": total,
        "rate": rate,
        "seconds": seconds,
        "inclusive": inclusive,
        "exclusive": [
            {"owner": o, "pct": round(100 * n / total, 1)} for o, n in owners.most_common(14)
        ],
        "leaves": [
            {"frame": f, "pct": round(100 * n / total, 1)} for f, n in leaves.most_common(12)
        ],
    }


def profile_run(
    py_spy: str,
    server: Server,
    targets: Sequence[Target],
    clients: int,
    seconds: float,
    meter: Meter,
) -> dict[str, Any]:
    """Measure once more with py-spy attached to the (single-process) server."""
    rate = 400
    pid = server.worker_pids()[0]
    # --gil: only the thread holding the GIL is sampled, so samples are Python CPU time (py-spy
    # counts threads blocked in psycopg's C wait as active otherwise); --nonblocking: don't
    # pause the server to sample it (blocking sampling cut its throughput by a quarter here).
    cmd = [
        py_spy, "record", "--pid", str(pid), "--rate", str(rate), "--duration", str(round(seconds)),
        "--gil", "--nonblocking", "--format", "raw", "-o", str(PROFILE_RAW),
    ]  # fmt: skip
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # attach before the load starts
    row = measure_http(server, targets, clients, seconds - 1.5, meter)
    _, err = spy.communicate(timeout=60)
    if spy.returncode != 0 or not PROFILE_RAW.exists():
        raise RuntimeError(f"py-spy failed ({spy.returncode}): {err[-800:]}")
    prof = summarize_profile(PROFILE_RAW, rate, round(seconds))
    return {"measurement": row, **prof, "command": shlex.join(cmd)}

"""Advance → approve cycles over HTTP with N concurrent clients, against hand-written SQL.

One cycle is two state-changing calls on one run: the branch secretary's
`POST /api/v1/runs/{id}/requests` (201), then the parent committee member's
`POST /api/v1/requests/{id}/approve` (200). Every client has its own pool of distinct runs
(one cycle per run, never shared), so clients never conflict. Reported: state-changing calls
per second (each POST counts once), p50/p99 latency per call as the client sees it, errors
(any non-2xx or transport error), and CPU per call of the server, PostgreSQL and this process.

The SQL baseline does the equivalent writes with psycopg 3 on the same database, one
connection per client, two transactions per cycle (mirroring ../shared/baselines/raw_sql.py's
shape, on our real tables): lock the run row, insert the request, set the run's pending request
(version compare-and-set), append a hash-chained audit event, insert an outbox row, commit; then
lock the run row, insert the decision, close the request, move the run to `pledge`, audit +
outbox, commit. Each transaction counts as one call.

Setup (not timed) on a fresh database `dj_bench_http`: root (党委) → committees (党总支) →
branches (党支部), one secretary per branch and one committee member per committee, each
with a bearer token, all COPYed; campaigns of `chuangxian_zhengyou` launched with
`launch_campaign`; the meeting evidence of every run the HTTP side will use inserted set-wise
with the same evidence row and hash-chained audit event `record_evidence` writes. The servers
(one per variant of `--workers`, all started up front, access log off; see bench/serve.py for
`+reuseport` and `+nodelay`) are warmed before the first measurement. Each round runs, per
client count: ours on every server, then the SQL baseline (A B A B …); medians over rounds.

    .venv/bin/python -m bench.http_cycle                    # about 5 minutes; updates BENCHMARKS.md
    .venv/bin/python -m bench.http_cycle --py-spy /tmp/prof-venv/bin/py-spy   # plus a profile
    .venv/bin/python -m bench.http_cycle --report-only      # re-render from bench/results/
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Json
from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from bench.common import (
    ORG_COLUMNS,
    PG_ADMIN_URL,
    analyze,
    checkpoint,
    emit,
    machine,
    median,
    migrated_engine,
    note,
    pg_url,
)
from states.audit import GENESIS, event_hash
from states.campaigns import launch_campaign
from states.catalog import get_template
from states.db import make_engine
from states.evidence import validate_evidence
from states.orgs import child_path
from states.timeutil import utcnow
from states.tokens import token_digest

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
JSONL = RESULTS / "http_cycle.jsonl"
PROFILE_RAW = RESULTS / "http_cycle_profile.txt"
API = "/api/v1"
TEMPLATE = "chuangxian_zhengyou"
MEETING = {"date": "2026-11-20", "title": "动员大会", "expected": 3, "present": 3}
ROOT = "B"
GOAL_CALLS, GOAL_P99_MS = 1000, 50.0
SECTION_START = "<!-- bench.http_cycle: start -->"
SECTION_END = "<!-- bench.http_cycle: end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SPEC = re.compile(r"\d+(\+(nodelay|reuseport|serve))?")


# --- databases ---------------------------------------------------------------------------------


def _admin(sql: str) -> None:
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(sql))
    admin.dispose()


def fresh_db(name: str) -> str:
    """Drop and recreate database `name` (must start with dj_bench_); return its URL."""
    if not name.startswith("dj_bench_"):
        raise SystemExit(f"refusing to recreate {name!r}: use a database named dj_bench_*")
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    return pg_url(name)


def drop_db(name: str) -> None:
    if name.startswith("dj_bench_"):
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def conninfo(url: str) -> str:
    u = make_url(url)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"


def copy_rows(
    engine: Engine, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows with explicit ids into `table`, then move its id sequence past them."""
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        with pg.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT max(id) FROM {table}))"
            )
        raw.commit()
    finally:
        raw.close()


# --- the world: tree, users, tokens, runs ------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One run to take through one cycle, with who acts on it."""

    run_id: int
    org_id: int
    org_code: str
    org_name: str
    approver_org: int
    campaign_id: int
    campaign_name: str
    secretary: int
    committee: int
    sec_token: str
    com_token: str


@dataclass
class World:
    branches: list[tuple[int, str, str, int]]  # (org id, code, name, parent org id)
    secretary_of: dict[int, tuple[int, str]]  # org id → (user id, token)
    committee_of: dict[int, tuple[int, str]]
    runs: list[Target] = field(default_factory=list)
    taken: int = 0

    def take(self, n: int) -> list[Target]:
        if self.taken + n > len(self.runs):
            raise RuntimeError(f"run pool exhausted: {self.taken} + {n} > {len(self.runs)}")
        out = self.runs[self.taken : self.taken + n]
        self.taken += n
        return out


def build_world(engine: Engine, branches: int, committees: int) -> World:
    """COPY root → committees (党总支) → branches (党支部), their users, grants and tokens."""
    now = utcnow()
    root_path = child_path(None, ROOT)
    orgs: list[tuple[Any, ...]] = [
        (1, ROOT, "示例市卫生局党委", "党委", None, root_path, 0, 0, now, now)
    ]
    c_paths = []
    for c in range(committees):
        code = f"C{c + 1:03d}"
        c_paths.append(child_path(root_path, code))
        orgs.append((2 + c, code, f"第{c + 1}党总支", "党总支", 1, c_paths[-1], 1, 0, now, now))
    world = World(branches=[], secretary_of={}, committee_of={})
    s_base = 2 + committees
    for s in range(branches):
        c = s % committees
        code = f"S{s + 1:05d}"
        org_id, name = s_base + s, f"第{s + 1}党支部"
        path = child_path(c_paths[c], code)
        orgs.append((org_id, code, name, "党支部", 2 + c, path, 2, 3, now, now))
        world.branches.append((org_id, code, name, 2 + c))
    copy_rows(engine, "organisation", ORG_COLUMNS, orgs)

    users, grants, tokens = [], [], []
    holders = [(org_id, f"sec-{code}", "secretary") for org_id, code, _, _ in world.branches]
    holders += [(2 + c, f"com-C{c + 1:03d}", "committee") for c in range(committees)]
    for uid, (org_id, username, role) in enumerate(holders, 1):
        token = secrets.token_urlsafe(32)
        users.append((uid, username, username, "!", True, now))
        grants.append((uid, uid, org_id, role, now))
        tokens.append((uid, token_digest(token), uid, "api", now, now + timedelta(hours=12)))
        mine = world.secretary_of if role == "secretary" else world.committee_of
        mine[org_id] = (uid, token)
    copy_rows(
        engine,
        "app_user",
        ["id", "username", "display_name", "password_hash", "is_active", "created_at"],
        users,
    )
    copy_rows(engine, "role_grant", ["id", "user_id", "org_id", "role", "created_at"], grants)
    copy_rows(
        engine,
        "api_token",
        ["id", "token_hash", "user_id", "label", "created_at", "expires_at"],
        tokens,
    )
    return world


def launch_runs(engine: Engine, world: World, needed: int) -> None:
    """Launch campaigns over the whole tree (one after another) until `needed` runs exist."""
    orgs = {org_id: (code, name, parent) for org_id, code, name, parent in world.branches}
    launched = 0
    with Session(engine, expire_on_commit=False) as s:
        while launched < needed:
            n = len(world.runs) // len(world.branches) + 1
            campaign = launch_campaign(s, template_key=TEMPLATE, root_code=ROOT, name=f"http {n}")
            s.commit()
            rows = s.execute(
                text("SELECT id, org_id FROM run WHERE campaign_id = :c ORDER BY id"),
                {"c": campaign.id},
            ).all()
            for run_id, org_id in rows:
                code, name, parent = orgs[org_id]
                sec, com = world.secretary_of[org_id], world.committee_of[parent]
                world.runs.append(
                    Target(
                        run_id, org_id, code, name, parent, campaign.id or 0, campaign.name,
                        sec[0], com[0], sec[1], com[1],
                    )
                )  # fmt: skip
            launched += len(rows)


def record_meetings(dsn: str, targets: Sequence[Target]) -> None:
    """Give each run its meeting: the evidence row and audit event `record_evidence` writes."""
    clean, subject = validate_evidence(get_template(TEMPLATE), "meeting", MEETING)
    by_run = {t.run_id: t for t in targets}
    now = utcnow()
    with psycopg.connect(dsn) as conn:
        assert not conn.execute(
            "SELECT 1 FROM audit_event WHERE run_id = ANY(%s) LIMIT 1", (list(by_run),)
        ).fetchone(), "runs to prepare already have audit events"
        rows = conn.execute(
            "INSERT INTO evidence (org_id, run_id, stage, kind, subject, data, recorded_by,"
            " recorder_org_id, on_behalf, created_at)"
            " SELECT t.org, t.run_id, 'mobilize', 'meeting', %s, %s, t.sec, t.org, false, %s"
            " FROM unnest(%s::int[], %s::int[], %s::int[]) AS t(run_id, sec, org)"
            " RETURNING id, run_id",
            (
                subject,
                Json(clean),
                now,
                [t.run_id for t in targets],
                [t.secretary for t in targets],
                [t.org_id for t in targets],
            ),
        ).fetchall()
        conn.execute(
            "INSERT INTO evidence_link (evidence_id, run_id, stage, linked_by, linked_at)"
            " SELECT e.id, e.run_id, e.stage, e.recorded_by, e.created_at FROM evidence e"
            " WHERE e.id = ANY(%s)",
            ([ev_id for ev_id, _ in rows],),
        )
        cols = "stream, seq, at, actor_id, action, run_id, data, prev_hash, hash"
        with conn.cursor().copy(f"COPY audit_event ({cols}) FROM STDIN") as cp:
            for ev_id, run_id in rows:
                t = by_run[run_id]
                data = {
                    "org": t.org_code,
                    "evidence_id": ev_id,
                    "stage": "mobilize",
                    "kind": "meeting",
                    "subject": subject,
                    "on_behalf": False,
                }
                digest = event_hash(
                    prev_hash=GENESIS, stream=f"run:{run_id}", seq=1, at=now,
                    actor_id=t.secretary, action="evidence.recorded", run_id=run_id, data=data,
                )  # fmt: skip
                cp.write_row(
                    (f"run:{run_id}", 1, now, t.secretary, "evidence.recorded", run_id,
                     json.dumps(data), GENESIS, digest)
                )  # fmt: skip
        conn.execute(  # each run's row holds its stream's head (`Run.audit_seq`/`audit_hash`)
            "UPDATE run SET audit_seq = e.seq, audit_hash = e.hash FROM audit_event e"
            " WHERE e.stream = 'run:' || run.id AND e.seq = 1 AND run.id = ANY(%s)",
            (list(by_run),),
        )


# --- CPU accounting from /proc -----------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    """One process's CPU so far, in clock ticks (from /proc/<pid>/stat)."""

    comm: str
    ppid: int
    user: int
    sys: int
    reaped: int  # CPU of its children that exited and were waited for (cutime + cstime)

    @property
    def ticks(self) -> int:
        return self.user + self.sys


def _proc_table() -> dict[int, Proc]:
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        f = raw[raw.rindex(")") + 2 :].split()
        out[int(entry.name)] = Proc(
            comm, int(f[1]), int(f[11]), int(f[12]), int(f[13]) + int(f[14])
        )
    return out


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _pg_database(pid: int) -> str | None:
    """The database a PostgreSQL backend or autovacuum worker serves (None: server-wide)."""
    title = _cmdline(pid).decode(errors="replace").strip("\0").split(": ")
    words = title[2].split() if len(title) > 2 else []
    if words[:2] == ["autovacuum", "worker"] and len(words) > 2:
        return words[2]
    if len(words) > 2 and "(" in words[2]:  # "<user> <database> <host>(<port>) <state>"
        return words[1]
    return None


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def cpu_snapshot(server_roots: Sequence[int], db: str) -> dict[str, int]:
    """CPU ticks used so far by the servers, PostgreSQL (for `db`), this process, the machine.

    PostgreSQL counts its live processes serving `db` or the whole cluster (checkpointer, WAL
    writer, …) plus what the postmaster has reaped from exited children: the app's pool closes
    overflow connections, whose backends would otherwise vanish from the count.
    """
    table = _proc_table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, proc in table.items():
        children[proc.ppid].append(pid)
    server = server_sys = 0
    stack = list(server_roots)
    while stack:
        pid = stack.pop()
        if pid in table:
            server += table[pid].ticks
            server_sys += table[pid].sys
        stack.extend(children.get(pid, []))
    pg = 0
    for pid, proc in table.items():
        if proc.comm != "postgres":
            continue
        if table.get(proc.ppid, proc).comm != "postgres":  # the postmaster
            pg += proc.reaped
        if _pg_database(pid) in (None, db):
            pg += proc.ticks
    busy, total = _machine_ticks()
    me = table.get(os.getpid())
    return {
        "server": server,
        "server_sys": server_sys,
        "pg": pg,
        "client": me.ticks if me else 0,
        "busy": busy,
        "total": total,
    }


@dataclass(frozen=True)
class Meter:
    """Where to read CPU time: the servers' process trees and the benchmark database."""

    server_roots: Sequence[int]
    db: str

    def snap(self) -> dict[str, int]:
        return cpu_snapshot(self.server_roots, self.db)


def cpu_split(before: dict[str, int], after: dict[str, int], calls: int) -> dict[str, float]:
    """CPU ms per call of the server, PostgreSQL and this process; machine use in % of all CPUs."""
    d = {k: after[k] - before[k] for k in before}
    total = max(d["total"], 1)
    ms = 1000 / CLK_TCK / max(calls, 1)
    other = max(d["busy"] - d["server"] - d["pg"] - d["client"], 0)
    return {
        "server_ms": round(d["server"] * ms, 2),
        "server_sys_pct": round(100 * d["server_sys"] / max(d["server"], 1), 1),
        "pg_ms": round(d["pg"] * ms, 2),
        "client_ms": round(d["client"] * ms, 2),
        "busy_pct": round(100 * d["busy"] / total, 1),
        "other_pct": round(100 * other / total, 1),
    }


class DbStats:
    """New connections and transactions in the benchmark database (pg_stat_database)."""

    QUERY = (
        "SELECT sessions, xact_commit + xact_rollback FROM pg_stat_database"
        " WHERE datname = current_database()"
    )

    def __init__(self, dsn: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.start: tuple[int, int] = self.read()

    def read(self) -> tuple[int, int]:
        row = self.conn.execute(self.QUERY).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    def attach(self, rec: dict[str, Any], now: tuple[int, int]) -> dict[str, Any]:
        """Add connections and transactions per call since `start` (includes the check after
        the measurement: one connection, one or two transactions)."""
        calls = max(rec["calls"], 1)
        rec["new_conns_per_call"] = round((now[0] - self.start[0]) / calls, 3)
        rec["xacts_per_call"] = round((now[1] - self.start[1]) / calls, 2)
        return rec

    def close(self) -> None:
        self.conn.close()


def machine_busy(seconds: float = 2.0) -> float:
    """Share of all CPUs in use over `seconds`, in %."""
    b0, t0 = _machine_ticks()
    time.sleep(seconds)
    b1, t1 = _machine_ticks()
    return round(100 * (b1 - b0) / max(t1 - t0, 1), 1)


def wait_idle(limit: float, threshold: float = 15.0, first: float = 2.0) -> float:
    """Wait up to `limit` seconds for the machine to go quiet; return the last busy %.

    Other work on this small machine skews every figure: the benchmark waits for it to stop
    before it starts and before each measurement, and reports the share it still took.
    """
    t0 = time.monotonic()
    busy = machine_busy(first)
    while busy > threshold and time.monotonic() - t0 < limit:
        note(f"machine {busy:.0f}% busy by other work; waiting for it to go quiet")
        busy = machine_busy(5.0)
    return busy


# --- the servers -------------------------------------------------------------------------------


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


# --- the timed part: HTTP ----------------------------------------------------------------------


@dataclass
class Tally:
    """What one client saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, successful calls
    by_call: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    cycles: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    end: float = 0.0
    exhausted: bool = False


def _slices(targets: Sequence[Target], clients: int) -> list[list[Target]]:
    return [list(targets[k::clients]) for k in range(clients)]


async def _http_user(
    client: httpx.AsyncClient, targets: Sequence[Target], deadline: float, tally: Tally
) -> None:
    clock = time.perf_counter

    async def call(kind: str, path: str, token: str, expect: int) -> httpx.Response | None:
        t0 = clock()
        try:
            r = await client.post(path, json={}, headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            tally.errors[f"{kind}: {type(exc).__name__}"] += 1
            return None
        if r.status_code != expect:
            tally.errors[f"{kind}: HTTP {r.status_code}"] += 1
            return None
        dt = clock() - t0
        tally.latencies.append(dt)
        tally.by_call[kind].append(dt)
        return r

    for t in targets:
        if clock() >= deadline:
            break
        r = await call("request", f"{API}/runs/{t.run_id}/requests", t.sec_token, 201)
        if r is None:
            continue
        rid = r.json()["id"]
        if await call("approve", f"{API}/requests/{rid}/approve", t.com_token, 200):
            tally.cycles += 1
    else:
        tally.exhausted = True
    tally.end = clock()


async def _drive_http(
    base: str, slices: Sequence[Sequence[Target]], seconds: float, meter: Meter
) -> tuple[float, list[Tally], dict[str, int], dict[str, int]]:
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base, timeout=60, limits=limits, trust_env=False) for _ in slices
    ]
    try:
        await asyncio.gather(*(c.get("/healthz") for c in clients))  # connect before the clock
        tallies = [Tally() for _ in slices]
        before = meter.snap()
        start = time.perf_counter()
        await asyncio.gather(
            *(
                _http_user(c, s, start + seconds, t)
                for c, s, t in zip(clients, slices, tallies, strict=True)
            )
        )
        after = meter.snap()
        return start, tallies, before, after
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))


def healthz_ms(base: str, n: int = 50) -> float:
    """Median latency of `GET /healthz` on one keep-alive connection, in ms."""
    lat = []
    with httpx.Client(base_url=base, trust_env=False) as c:
        c.get("/healthz")
        for _ in range(n):
            t0 = time.perf_counter()
            c.get("/healthz").raise_for_status()
            lat.append(time.perf_counter() - t0)
    return round(1000 * median(lat), 2)


def measure_http(
    server: Server, targets: Sequence[Target], clients: int, seconds: float, meter: Meter
) -> dict[str, Any]:
    pids = server.worker_pids()
    t0 = _proc_table()
    start, tallies, before, after = asyncio.run(
        _drive_http(server.base, _slices(targets, clients), seconds, meter)
    )
    t1 = _proc_table()
    row = _result(start, tallies, before, after)
    if len(pids) > 1:  # how the server's CPU spread over its worker processes, busiest first
        used = [t1[p].ticks - t0[p].ticks for p in pids if p in t0 and p in t1]
        row["worker_shares"] = sorted(
            (round(100 * u / max(sum(used), 1)) for u in used), reverse=True
        )
    return row


def _pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`, in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return 1000 * ordered[k]


def _result(
    start: float, tallies: Sequence[Tally], before: dict[str, int], after: dict[str, int]
) -> dict[str, Any]:
    lat = [x for t in tallies for x in t.latencies]
    seconds = max(t.end for t in tallies) - start
    errors: Counter[str] = Counter()
    by_call: dict[str, list[float]] = defaultdict(list)
    for t in tallies:
        errors.update(t.errors)
        for k, v in t.by_call.items():
            by_call[k].extend(v)
    return {
        "calls": len(lat),
        "cycles": sum(t.cycles for t in tallies),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "seconds": round(seconds, 3),
        "calls_per_s": round(len(lat) / seconds, 1),
        "p50_ms": round(_pct(lat, 0.50), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "max_ms": round(1000 * max(lat, default=0), 1),
        "p50_by_call_ms": {k: round(_pct(v, 0.5), 2) for k, v in sorted(by_call.items())},
        "p99_by_call_ms": {k: round(_pct(v, 0.99), 2) for k, v in sorted(by_call.items())},
        "pool_exhausted": any(t.exhausted for t in tallies),
        "cpu": cpu_split(before, after, len(lat)),
    }


# --- the timed part: hand-written SQL ----------------------------------------------------------

LOCK_RUN = "SELECT stage, version FROM run WHERE id = %s FOR UPDATE"
INSERT_REQUEST = (
    "INSERT INTO request (run_id, kind, from_stage, to_stage, status, chain, step,"
    " current_approver_org_id, requested_by, on_behalf, created_at, submitted_at)"
    " VALUES (%s, 'advance', %s, %s, 'pending', %s, 0, %s, %s, false, now(), now()) RETURNING id"
)
SET_PENDING = (
    "UPDATE run SET pending_request_id = %s, version = version + 1 WHERE id = %s AND version = %s"
)
LAST_EVENT = "SELECT seq, hash FROM audit_event WHERE stream = %s ORDER BY seq DESC LIMIT 1"
INSERT_EVENT = (
    "INSERT INTO audit_event (stream, seq, at, actor_id, action, run_id, data, prev_hash, hash)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
INSERT_OUTBOX = (
    "INSERT INTO outbox (dedupe_key, event_kind, run_id, org_id, payload, status, attempts,"
    " next_attempt_at, created_at) VALUES (%s, %s, %s, %s, %s, 'pending', 0, now(), now())"
)
INSERT_DECISION = (
    "INSERT INTO decision (request_id, step, org_id, decided_by, outcome, created_at)"
    " VALUES (%s, 0, %s, %s, 'approved', now())"
)
CLOSE_REQUEST = (
    "UPDATE request SET status = 'approved', decided_at = now()"
    " WHERE id = %s AND status = 'pending'"
)
MOVE_RUN = (
    "UPDATE run SET stage = %s, entered_at = now(), deadline = now() + interval '15 days',"
    " escalation_level = 0, completed_at = NULL, pending_request_id = NULL,"
    " version = version + 1 WHERE id = %s AND version = %s"
)


def _audit(
    conn: psycopg.Connection[Any], t: Target, actor: int, action: str, data: dict[str, Any]
) -> None:
    stream = f"run:{t.run_id}"
    last = conn.execute(LAST_EVENT, (stream,)).fetchone()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = utcnow()
    digest = event_hash(
        prev_hash=prev, stream=stream, seq=seq, at=at, actor_id=actor, action=action,
        run_id=t.run_id, data=data,
    )  # fmt: skip
    conn.execute(INSERT_EVENT, (stream, seq, at, actor, action, t.run_id, Json(data), prev, digest))


def _outbox(conn: psycopg.Connection[Any], t: Target, kind: str, org: int, **extra: Any) -> None:
    payload = {
        "run_id": t.run_id,
        "campaign_id": t.campaign_id,
        "campaign": t.campaign_name,
        "org_code": t.org_code,
        "org_name": t.org_name,
        **extra,
    }
    key = f"{kind}:{extra['request_id']}"
    conn.execute(INSERT_OUTBOX, (key, kind, t.run_id, org, Json(payload)))


def sql_request(conn: psycopg.Connection[Any], t: Target) -> int:
    """Request to advance: lock the run, insert the request, mark it pending, audit, outbox."""
    with conn.transaction():
        stage, version = conn.execute(LOCK_RUN, (t.run_id,)).fetchone()  # type: ignore[misc]
        assert stage == "mobilize", stage
        chain = [t.approver_org]
        row = conn.execute(
            INSERT_REQUEST, (t.run_id, stage, "pledge", Json(chain), t.approver_org, t.secretary)
        ).fetchone()
        assert row is not None
        rid = int(row[0])
        assert conn.execute(SET_PENDING, (rid, t.run_id, version)).rowcount == 1
        _audit(
            conn, t, t.secretary, "request.submitted",
            {"org": t.org_code, "request_id": rid, "from_stage": stage, "to_stage": "pledge",
             "chain": chain, "on_behalf": False, "comment": None},
        )  # fmt: skip
        _outbox(
            conn, t, "request_submitted", t.approver_org,
            request_id=rid, stage="宣传发动", to_stage="公开承诺", comment=None,
        )  # fmt: skip
    return rid


def sql_approve(conn: psycopg.Connection[Any], t: Target, rid: int) -> None:
    """Approve: lock the run, insert the decision, close the request, move the run, audit,
    outbox."""
    with conn.transaction():
        stage, version = conn.execute(LOCK_RUN, (t.run_id,)).fetchone()  # type: ignore[misc]
        conn.execute(INSERT_DECISION, (rid, t.approver_org, t.committee))
        assert conn.execute(CLOSE_REQUEST, (rid,)).rowcount == 1
        assert conn.execute(MOVE_RUN, ("pledge", t.run_id, version)).rowcount == 1
        _audit(
            conn, t, t.committee, "stage.advanced",
            {"org": t.org_code, "request_id": rid, "from_stage": stage, "to_stage": "pledge",
             "opinion": None},
        )  # fmt: skip
        _outbox(
            conn, t, "request_approved", t.org_id,
            request_id=rid, stage="宣传发动", to_stage="公开承诺", opinion=None,
        )  # fmt: skip


def measure_sql(
    dsn: str, targets: Sequence[Target], clients: int, seconds: float, meter: Meter
) -> dict[str, Any]:
    """The same cycles with one psycopg connection per client (threads, like our load)."""
    slices = _slices(targets, clients)
    tallies = [Tally() for _ in slices]
    ready = threading.Barrier(clients + 1)
    go, done = threading.Event(), threading.Event()
    clock: dict[str, float] = {}

    def worker(ts: list[Target], tally: Tally) -> None:
        with psycopg.connect(dsn) as conn:
            conn.execute("SELECT 1").fetchone()
            conn.commit()
            ready.wait()
            go.wait()
            deadline = clock["deadline"]
            for t in ts:
                if time.perf_counter() >= deadline:
                    break
                rid = 0
                for kind in ("request", "approve"):
                    t0 = time.perf_counter()
                    try:
                        if kind == "request":
                            rid = sql_request(conn, t)
                        else:
                            sql_approve(conn, t, rid)
                    except (psycopg.Error, AssertionError) as exc:
                        tally.errors[f"{kind}: {type(exc).__name__}"] += 1
                        break
                    dt = time.perf_counter() - t0
                    tally.latencies.append(dt)
                    tally.by_call[kind].append(dt)
                else:
                    tally.cycles += 1
            else:
                tally.exhausted = True
            tally.end = time.perf_counter()
            done.wait()  # keep the backend alive until its CPU time is read

    threads = [
        threading.Thread(target=worker, args=(s, t)) for s, t in zip(slices, tallies, strict=True)
    ]
    for th in threads:
        th.start()
    ready.wait()
    before = meter.snap()
    start = time.perf_counter()
    clock["deadline"] = start + seconds
    go.set()
    while any(t.end == 0.0 for t in tallies) and any(th.is_alive() for th in threads):
        time.sleep(0.01)
    after = meter.snap()
    done.set()
    for th in threads:
        th.join()
    return _result(start, tallies, before, after)


# --- checks ------------------------------------------------------------------------------------


def verify_cycles(dsn: str, targets: Sequence[Target], cycles: int) -> None:
    """Runs moved to pledge == cycles, each with exactly one approved request and its rows."""
    ids = [t.run_id for t in targets]
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT"
            " (SELECT count(*) FROM run WHERE id = ANY(%(ids)s) AND stage = 'pledge'"
            "   AND pending_request_id IS NULL),"
            " (SELECT count(*) FROM request WHERE run_id = ANY(%(ids)s) AND status = 'approved'),"
            " (SELECT count(*) FROM audit_event WHERE run_id = ANY(%(ids)s)"
            "   AND action = 'stage.advanced'),"
            " (SELECT count(*) FROM outbox WHERE run_id = ANY(%(ids)s)"
            "   AND event_kind = 'request_approved'),"
            " (SELECT count(*) FROM request WHERE run_id = ANY(%(ids)s) AND status = 'pending')",
            {"ids": ids},
        ).fetchone()
    assert row is not None
    *got, pending = row
    assert tuple(got) == (cycles,) * 4, f"expected {cycles} finished cycles, database says {got}"
    if pending:
        note(f"  {pending} request(s) left pending (a failed approve); counted as errors")


def statements_per_call(url: str, targets: Sequence[Target]) -> dict[str, Any]:
    """Run cycles in-process (TestClient) and log the last cycle's SQL, per endpoint.

    The earlier cycles warm the per-process caches, as in a running server.
    """
    from starlette.testclient import TestClient

    from api.app import create_app

    engine = make_engine(url)
    current = {"call": ""}
    seen: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)

    def _log(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if not current["call"]:
            return
        words = statement.split()
        keys = [k for k in ("FROM", "INTO", "UPDATE") if k in words]
        table = words[words.index(keys[0]) + 1] if keys else ""
        seen[current["call"]].append(f"{words[0].upper()} {table}".strip())

    def _count(name: str) -> Any:
        def _inc(*_a: Any) -> None:
            if current["call"]:
                counts[current["call"]][name] += 1

        return _inc

    with TestClient(create_app(engine)) as client:
        *warm, probe = targets
        for t in [*warm, probe]:
            last = t is probe
            if last:
                event.listen(engine, "before_cursor_execute", _log)
                event.listen(engine.pool, "checkout", _count("checkouts"))
                event.listen(engine, "commit", _count("commits"))
                event.listen(engine, "rollback", _count("rollbacks"))
            current["call"] = "request" if last else ""
            r = client.post(
                f"{API}/runs/{t.run_id}/requests",
                json={},
                headers={"Authorization": f"Bearer {t.sec_token}"},
            )
            assert r.status_code == 201, r.text
            current["call"] = "approve" if last else ""
            r = client.post(
                f"{API}/requests/{r.json()['id']}/approve",
                json={},
                headers={"Authorization": f"Bearer {t.com_token}"},
            )
            assert r.status_code == 200, r.text
            current["call"] = ""
    engine.dispose()
    return {
        call: {"statements": seen[call], **dict(counts[call])} for call in ("request", "approve")
    }


# --- profile -----------------------------------------------------------------------------------

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
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            stacks.append((_frames(stack), int(n)))
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


# --- orchestration -----------------------------------------------------------------------------


def git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return res.stdout.strip()


def code_state() -> dict[str, Any]:
    """The commit, and a digest of uncommitted changes (untracked files too) under api/, states/."""
    diff = git("diff", "HEAD", "--", "api", "states")
    changed = git("diff", "HEAD", "--name-only", "--", "api", "states").split()
    for path in git("ls-files", "--others", "--exclude-standard", "--", "api", "states").split():
        changed.append(path)
        diff += path + hashlib.sha256((REPO / path).read_bytes()).hexdigest()
    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "trees": git("rev-parse", "HEAD:api", "HEAD:states").replace("\n", " "),
        "diff": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else "clean",
        "changed": sorted(changed),
    }


def _same_code(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return (a.get("trees"), a["diff"]) == (b.get("trees"), b["diff"])


def pg_settings(engine: Engine) -> dict[str, str]:
    names = (
        "max_connections", "shared_buffers", "fsync", "synchronous_commit", "wal_level",
        "max_wal_size", "checkpoint_timeout", "work_mem",
    )  # fmt: skip
    with engine.connect() as conn:
        return {n: conn.execute(text(f"SHOW {n}")).scalar_one() for n in names}


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds per (side, workers, clients), with the ratio to SQL."""
    keys = sorted({(r["side"], r["workers"], r["clients"]) for r in rows}, key=str)
    out = []
    for side, workers, clients in keys:
        rs = [
            r for r in rows if (r["side"], r["workers"], r["clients"]) == (side, workers, clients)
        ]
        cps = [r["calls_per_s"] for r in rs]
        row = {
            "summary": True,
            "side": side,
            "workers": workers,
            "clients": clients,
            "rounds": len(rs),
            "calls_per_s": round(median(cps), 1),
            "min": min(cps),
            "max": max(cps),
            "p50_ms": round(median([r["p50_ms"] for r in rs]), 2),
            "p99_ms": round(median([r["p99_ms"] for r in rs]), 2),
            "errors": sum(r["errors"] for r in rs),
            "calls": sum(r["calls"] for r in rs),
            "exhausted": sum(bool(r["pool_exhausted"]) for r in rs),
            "cpu": {k: round(median([r["cpu"][k] for r in rs]), 2) for k in rs[0]["cpu"]},
            "new_conns_per_call": round(median([r["new_conns_per_call"] for r in rs]), 3),
            "xacts_per_call": round(median([r["xacts_per_call"] for r in rs]), 2),
        }
        if all("worker_shares" in r for r in rs):
            row["busiest_worker_pct"] = median([r["worker_shares"][0] for r in rs])
        out.append(row)
    sql = {r["clients"]: r["calls_per_s"] for r in out if r["side"] == "sql"}
    for r in out:
        if r["side"] == "http" and r["clients"] in sql:
            r["ratio_to_sql"] = round(r["calls_per_s"] / sql[r["clients"]], 3)
    return out


def run_bench(args: argparse.Namespace) -> None:
    clients_list = [int(c) for c in args.clients.split(",")]
    workers_list = [w.strip() for w in args.workers.split(",")]
    if any(not SPEC.fullmatch(w) for w in workers_list):
        raise SystemExit(
            "--workers: comma-separated counts, each optionally +nodelay/+reuseport/+serve"
        )
    busy_before = wait_idle(args.wait_idle)
    t_all = time.perf_counter()
    before = code_state()
    RESULTS.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []

    def keep(rec: dict[str, Any]) -> None:
        records.append(rec)
        emit(rec)

    servers: list[Server] = []
    url = fresh_db(args.db)
    dsn = conninfo(url)
    try:
        t_setup = time.perf_counter()
        engine = migrated_engine(url)
        world = build_world(engine, args.branches, args.committees)
        n_http = args.rounds * len(clients_list) * len(workers_list)
        n_sql = args.rounds * len(clients_list)
        n_spare_sql = max(1, args.spares // 2)
        needed = (
            args.warmup_pool * len(workers_list)
            + (n_http + args.spares) * args.http_pool
            + (n_sql + n_spare_sql) * args.sql_pool
            + 3
            + (args.http_pool * 2 if args.py_spy else 0)
        )
        note(f"setup: {len(world.branches):,} branches; launching campaigns for {needed:,} runs")
        launch_runs(engine, world, needed)
        probe = world.take(3)
        warm = {w: world.take(args.warmup_pool) for w in workers_list}
        plan: list[tuple[int, int, str, str | None]] = []  # (round, clients, side, workers)
        for r in range(args.rounds):
            for c in clients_list:
                plan += [(r, c, "http", w) for w in workers_list]
                plan.append((r, c, "sql", None))
        pools = {p: world.take(args.http_pool if p[2] == "http" else args.sql_pool) for p in plan}
        spares = {
            "http": [world.take(args.http_pool) for _ in range(args.spares)],
            "sql": [world.take(args.sql_pool) for _ in range(n_spare_sql)],
        }
        prof_pool = world.take(args.http_pool * 2) if args.py_spy else []
        http_targets = [*probe, *[t for ts in warm.values() for t in ts], *prof_pool]
        http_targets += [t for ts in spares["http"] for t in ts]
        http_targets += [t for p, ts in pools.items() if p[2] == "http" for t in ts]
        note(f"setup: recording the meeting on {len(http_targets):,} runs (set-wise)")
        record_meetings(dsn, http_targets)
        analyze(
            engine, "organisation", "app_user", "role_grant", "api_token", "run", "evidence",
            "audit_event", "outbox", "campaign",
        )  # fmt: skip
        statements = statements_per_call(url, probe)
        facts = {**machine(engine), "pg": pg_settings(engine)}
        for w in workers_list:
            servers.append(Server(url, w))
        for srv in servers:
            srv.wait_ready()
        meter = Meter([s.proc.pid for s in servers], args.db)
        served = code_state()  # what the servers imported; later edits don't reach them
        setup_s = time.perf_counter() - t_setup
        note(f"setup done in {setup_s:.0f}s; warming the servers")
        for srv in servers:
            row = measure_http(srv, warm[srv.spec], 8, args.warmup_seconds, meter)
            if row["errors"]:
                raise RuntimeError(f"warm-up errors on server {srv.spec}: {row['error_kinds']}")
        healthz = {srv.spec: healthz_ms(srv.base) for srv in servers}

        t_timed = time.perf_counter()
        by_workers = {s.spec: s for s in servers}
        stats = DbStats(dsn)
        pending: list[dict[str, Any]] = []  # the last measurement, until its counters settle
        discarded: list[dict[str, Any]] = []
        ended = time.monotonic()

        def settle() -> None:
            """PostgreSQL flushes a backend's counters within ~1 s: attach the previous
            measurement's sessions and transactions only now, after the checkpoint."""
            time.sleep(max(0.0, 1.1 - (time.monotonic() - ended)))
            counts = stats.read()
            for rec in pending:
                stats.attach(rec, counts)
                if rec.pop("discard", False):
                    discarded.append(rec)
                    emit({**rec, "discarded": True})
                else:
                    keep(rec)
            pending.clear()
            stats.start = counts

        for p in plan:
            r, clients, side, w = p
            pool = pools[p]
            for attempt in range(1, args.retries + 2):
                checkpoint(engine)
                wait_idle(args.wait_idle, first=0.3)
                settle()
                if side == "http":
                    assert w is not None
                    row = measure_http(by_workers[w], pool, clients, args.seconds, meter)
                else:
                    row = measure_sql(dsn, pool, clients, args.seconds, meter)
                ended = time.monotonic()
                verify_cycles(dsn, pool, row["cycles"])
                rec = {"bench": "http_cycle", "round": r + 1, "side": side, "workers": w,
                       "clients": clients, "attempt": attempt, **row}  # fmt: skip
                pending.append(rec)
                other = row["cpu"]["other_pct"]
                if other <= args.noise or attempt > args.retries or not spares[side]:
                    break
                rec["discard"] = True
                note(f"other work took {other:.0f}% of the CPUs: repeating {side} {w or ''} "
                     f"at {clients} clients")  # fmt: skip
                pool = spares[side].pop()
            if clients == clients_list[-1] and side == "sql":
                note(f"round {r + 1}/{args.rounds} done")
        checkpoint(engine)
        settle()
        stats.close()
        timed_s = time.perf_counter() - t_timed
        summary = summarize(records)
        for s in summary:
            emit({"bench": "http_cycle", **s})

        profile = None
        if args.py_spy:
            single = by_workers.get("1") or servers[0]
            note(f"profiling the {single.spec}-worker server at {args.profile_clients} clients")
            checkpoint(engine)
            wait_idle(args.wait_idle, first=0.3)
            profile = profile_run(
                args.py_spy, single, prof_pool, args.profile_clients, args.profile_seconds, meter
            )
        engine.dispose()
    finally:
        for srv in servers:
            srv.stop()
        if not args.keep:
            drop_db(args.db)
    python = sys.executable.replace(str(REPO) + "/", "")
    meta = {
        "bench": "http_cycle",
        "meta": True,
        "command": shlex.join([python, "-m", "bench.http_cycle", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "wall_seconds": round(time.perf_counter() - t_all, 1),
        "setup_seconds": round(setup_s, 1),
        "busy_before_pct": busy_before,
        "timed_seconds": round(timed_s, 1),
        "code_before": before,
        "code_servers": served,
        "code_after": code_state(),
        "machine": facts,
        "server_cmds": {srv.spec: srv.describe() for srv in servers},
        "args": vars(args),
        "statements": statements,
        "healthz_ms": healthz,
        "measurements": len(records),
        "noisy": [r["cpu"]["other_pct"] for r in records if r["cpu"]["other_pct"] > args.noise],
        "repeated": len(discarded),
        "profile": profile,
        "summary": summary,
    }
    emit(meta)
    with JSONL.open("w") as fh:
        for rec in [*records, *({**d, "discarded": True} for d in discarded), meta]:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")


# --- BENCHMARKS.md -----------------------------------------------------------------------------

LABELS = {
    "+nodelay": " + TCP_NODELAY fix",
    "+reuseport": ", SO_REUSEPORT",
    "+serve": ", `dangjian serve`",
}


def _wl(spec: str | None) -> str:
    """A table label for a server spec: "1", "2", "2, SO_REUSEPORT", "2 + TCP_NODELAY fix"."""
    if not spec:
        return "–"
    for suffix, label in LABELS.items():
        spec = spec.replace(suffix, label)
    return spec


def _who(spec: str | None) -> str:
    """The same in prose: "1 worker", "2 workers", "2 processes on SO_REUSEPORT"."""
    if not spec:
        return "the SQL baseline"
    n = int(spec.split("+")[0])
    if spec.endswith("+reuseport"):
        return f"{n} processes on SO_REUSEPORT"
    if spec.endswith("+serve"):
        return f"`dangjian serve --workers {n}`"
    words = f"{n} worker" + ("s" if n > 1 else "")
    return words + (" + TCP_NODELAY fix" if spec.endswith("+nodelay") else "")


def _n(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _code_line(meta: dict[str, Any]) -> str:
    """Which code was measured, and whether it moved while the benchmark ran."""
    before, after = meta["code_before"], meta["code_after"]
    served = meta.get("code_servers", before)
    line = f"commit `{served['commit']}`"
    if served["diff"] == "clean":
        line += " (no uncommitted changes under `api/` or `states/`)"
    else:
        line += (
            f" plus uncommitted changes under `api/`/`states/` (digest {served['diff']}: "
            + ", ".join(f"`{f}`" for f in served.get("changed", []))
            + ")"
        )
    if not _same_code(before, served):
        line += (
            "; **the code changed between the setup and the servers' start**, rerun for clean "
            "figures"
        )
    elif not _same_code(served, after):
        line += (
            f"; the working tree changed after the servers started (now `{after['commit']}`"
            + (f", uncommitted: {', '.join(after['changed'])}" if after.get("changed") else "")
            + "), which running processes do not load"
        )
    return line


def render(meta: dict[str, Any]) -> str:
    m, a, summary = meta["machine"], meta["args"], meta["summary"]
    pg = m["pg"]
    out = [
        SECTION_START,
        "## HTTP: advance → approve cycles against hand-written SQL",
        "",
        f"Generated by `bench/http_cycle.py` on {meta['date']} (wall time "
        f"{meta['wall_seconds'] / 60:.1f} min: setup {meta['setup_seconds']:.0f} s, timed part "
        f"{meta['timed_seconds']:.0f} s). Command, from the repository root (py-spy installed "
        "in its own venv: `python -m venv /tmp/prof-venv && /tmp/prof-venv/bin/pip install "
        "py-spy`; without `--py-spy` the profile is skipped):",
        "",
        f"    {meta['command']}",
        "",
        f"Code measured: {_code_line(meta)}. Machine: `nproc` = {m.get('nproc')} "
        f"({m.get('cpu', '?')}), {m.get('mem_gib')} GiB; Python {m.get('python')}; PostgreSQL "
        f"{m.get('postgresql')} on 127.0.0.1, the same machine, default settings: "
        f"max_connections={pg['max_connections']}, shared_buffers={pg['shared_buffers']}, "
        f"fsync={pg['fsync']}, synchronous_commit={pg['synchronous_commit']}, "
        f"wal_level={pg['wal_level']}, max_wal_size={pg['max_wal_size']}, "
        f"checkpoint_timeout={pg['checkpoint_timeout']}, work_mem={pg['work_mem']}. **Server, "
        "PostgreSQL and the load generator share the 2 cores.**",
        "",
        "**Cycle.** The branch secretary's `POST /api/v1/runs/{id}/requests` (201), then the "
        "parent committee member's `POST /api/v1/requests/{id}/approve` (200), each with its own "
        "bearer token; **each POST counts as one state-changing call**. Each client (one "
        "`httpx.AsyncClient`, one keep-alive connection; all clients in one asyncio loop in the "
        "benchmark process) works through its own runs, one cycle per run, so clients never "
        "conflict; any non-2xx or transport error counts as an error. Database "
        f"`{a['db']}`, fresh: root → {a['committees']} committees (党总支) → "
        f"{a['branches']:,} branches (党支部), a secretary per branch and a committee member "
        "per committee (users, grants and tokens COPYed); campaigns of `chuangxian_zhengyou` "
        "launched with `launch_campaign`; every run's meeting recorded before the clock "
        "(set-wise: the evidence row and hash-chained audit event `record_evidence` writes). "
        "After every measurement the database is checked: runs moved to `pledge` = cycles "
        "counted, each with one approved request, one `stage.advanced` event and one "
        "`request_approved` notice.",
        "",
        "**Servers**, started once and warmed before the first measurement (`DATABASE_URL` "
        "set): "
        + "; ".join(f"{_who(w)}: `{cmd}`" for w, cmd in meta["server_cmds"].items())
        + ". uvicorn 0.54 runs with h11 and the asyncio loop (httptools and uvloop are not "
        "installed); access log off; the app's engine is the default `make_engine`: QueuePool "
        "of 10 + 30 overflow per process (`DANGJIAN_DB_POOL_SIZE`), pre-ping on. `bench/serve.py` is explained below; it "
        "does not change the app.",
        "",
        "**SQL baseline**: the same cycle as hand-written SQL with psycopg 3 on the same database "
        "and tables, one connection per client (threads of the benchmark process), two "
        "transactions per cycle, each counting as one call: `SELECT … FOR UPDATE` the run, "
        "`INSERT request`, `UPDATE run` (pending request, version compare-and-set), the audit "
        "chain head `SELECT` + `INSERT audit_event` (same SHA-256 chain as `states.audit`), "
        "`INSERT outbox`, `COMMIT`; then `SELECT … FOR UPDATE` the run, `INSERT decision`, "
        "`UPDATE request`, `UPDATE run` (stage, deadline, version), audit head + `INSERT "
        "audit_event`, `INSERT outbox`, `COMMIT`. It **mirrors** `../shared/baselines/raw_sql.py` "
        "(psycopg 3; lock the row, compare-and-set update, audit row, outbox row, one "
        "transaction per step) rather than reusing it: that script has its own three-table "
        "schema, which it drops and recreates, and refuses databases not named `baseline*`, so "
        "it cannot write our tables.",
        "",
        f"**Measurements** run {a['seconds']:g} s each (clients start no cycle after the "
        "deadline; calls/s = successful POSTs ÷ time to the last client's finish). "
        f"{a['rounds']} rounds; within a round, per client count: ours on each server, then "
        "SQL (A B A B …); a CHECKPOINT precedes every measurement, and the benchmark waits "
        "for the machine to be quiet before each one and repeats, on fresh runs, one during "
        f"which other work took more than {a['noise']:g}% of the CPUs (up to {a['retries']} "
        "times). Medians over rounds; latency is per call as the client sees it (p50/p99 over "
        "the calls of a measurement, median over rounds). CPU per call comes from `/proc` "
        "(utime + stime): the server's processes; PostgreSQL's processes for this database and "
        "the cluster-wide ones, plus what the postmaster reaped from exited backends; the "
        "benchmark process (load generator, or the SQL clients). Busy = share of both cores in "
        "use; (other) = the part used by none of these.",
        "",
        "| side | server workers | clients | calls/s (median) | min–max | p50 ms | p99 ms | errors "
        "| CPU ms/call: server | PostgreSQL | load gen. | busy (other) | ÷ SQL |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    order = list(meta["server_cmds"])
    for s in sorted(
        summary,
        key=lambda s: (s["clients"], s["side"] == "sql", order.index(s["workers"] or order[0])),
    ):
        cpu = s["cpu"]
        side = "ours (HTTP)" if s["side"] == "http" else "SQL (psycopg)"
        ratio = f"{s['ratio_to_sql']:.2f}×" if "ratio_to_sql" in s else "–"
        out.append(
            f"| {side} | {_wl(s['workers'])} | {s['clients']} | **{_n(s['calls_per_s'])}** "
            f"| {_n(s['min'])}–{_n(s['max'])} | {s['p50_ms']:.1f} | {s['p99_ms']:.1f} "
            f"| {s['errors']} | {cpu['server_ms']:.1f} | {cpu['pg_ms']:.1f} "
            f"| {cpu['client_ms']:.1f} | {cpu['busy_pct']:.0f}% ({cpu['other_pct']:.0f}%) "
            f"| {ratio} |"
        )
    out += ["", *_result_lines(meta), *_workers_lines(meta), *_limits_lines(meta)]
    out += [
        "",
        "Raw JSON lines: `bench/results/http_cycle.jsonl` (per measurement: per-endpoint p50/p99, "
        "error kinds, CPU split, worker shares); server logs: `bench/results/http_server_w*.log`;"
        " the profile's raw stacks: `bench/results/http_cycle_profile.txt`. The run creates and "
        f"drops the database `{a['db']}` (`--keep` keeps it).",
        SECTION_END,
    ]
    return "\n".join(out) + "\n"


def _result_lines(meta: dict[str, Any]) -> list[str]:
    summary = meta["summary"]
    ours = [s for s in summary if s["side"] == "http"]
    best = max(ours, key=lambda s: s["calls_per_s"])
    ok = [s for s in ours if s["p99_ms"] <= GOAL_P99_MS]
    best_ok = max(ok, key=lambda s: s["calls_per_s"]) if ok else None
    sql_best = max((s for s in summary if s["side"] == "sql"), key=lambda s: s["calls_per_s"])
    ratios = [s["ratio_to_sql"] for s in ours if "ratio_to_sql" in s]
    line = (
        f"**Goal: {GOAL_CALLS:,} state-changing calls/s at p99 ≤ {GOAL_P99_MS:.0f} ms — not "
        f"reached.** Highest median throughput: **{_n(best['calls_per_s'])} calls/s** "
        f"({_who(best['workers'])}, {best['clients']} clients, p99 {best['p99_ms']:.0f} ms), "
        f"{100 * best['calls_per_s'] / GOAL_CALLS:.0f}% of the goal; "
    )
    if best_ok:
        line += (
            f"highest with p99 ≤ {GOAL_P99_MS:.0f} ms: **{_n(best_ok['calls_per_s'])} calls/s** "
            f"({_who(best_ok['workers'])}, {best_ok['clients']} client"
            f"{'s' if best_ok['clients'] > 1 else ''}, p99 {best_ok['p99_ms']:.0f} ms). "
        )
    else:
        line += f"no configuration kept p99 ≤ {GOAL_P99_MS:.0f} ms. "
    line += (
        f"The SQL baseline peaks at {_n(sql_best['calls_per_s'])} calls/s "
        f"({sql_best['clients']} clients, p99 {sql_best['p99_ms']:.0f} ms) on the same machine; "
        f"ours ÷ SQL at the same client count: {min(ratios):.2f}–{max(ratios):.2f}×. Errors "
        f"(non-2xx or transport) over all measurements: {sum(s['errors'] for s in summary)}."
    )
    exhausted = sum(s["exhausted"] for s in summary)
    if exhausted:
        line += (
            f" In {exhausted} measurement(s) a client ran out of runs before the deadline "
            "(throughput still valid, over a shorter time)."
        )
    noise = meta["args"]["noise"]
    if meta.get("repeated"):
        line += (
            f" {meta['repeated']} measurement(s) were repeated on fresh runs because other work "
            f"on the machine took more than {noise:g}% of the CPUs while they ran."
        )
    noisy = meta.get("noisy", [])
    if noisy:
        line += (
            f" Other work still took more than {noise:g}% of the CPUs during {len(noisy)} of "
            f"the {meta['measurements']} measurements kept (up to {max(noisy):.0f}%; see the "
            "(other) column); the medians damp it."
        )
    return [line]


def _by_clients(summary: Sequence[dict[str, Any]], spec: str) -> dict[int, dict[str, Any]]:
    return {s["clients"]: s for s in summary if s["side"] == "http" and s["workers"] == spec}


def _change(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> str:
    return ", ".join(
        f"{c} client{'s' if c > 1 else ''} {_n(a[c]['calls_per_s'])} → {_n(b[c]['calls_per_s'])}"
        f" ({100 * (b[c]['calls_per_s'] / a[c]['calls_per_s'] - 1):+.0f}%)"
        for c in sorted(a)
        if c in b
    )


def _busiest(rows: dict[int, dict[str, Any]]) -> str:
    """The busiest process's share of the server's CPU, per client count (more than one)."""
    shares = [
        f"{s['busiest_worker_pct']:.0f}% at {c} clients"
        for c, s in sorted(rows.items())
        if c > 1 and "busiest_worker_pct" in s
    ]
    return ", ".join(shares) or "not recorded"


def _workers_lines(meta: dict[str, Any]) -> list[str]:
    summary, specs = meta["summary"], list(meta["server_cmds"])
    one = _by_clients(summary, "1")
    two = _by_clients(summary, "2")
    fixed_spec = next((w for w in specs if w in ("2+reuseport", "2+nodelay")), None)
    fixed = _by_clients(summary, fixed_spec) if fixed_spec else {}
    if not (one and (two or fixed)):
        return []
    text_: list[str] = []
    if two:
        c1 = min(two)
        text_.append(
            "Started the usual way (`uvicorn --workers 2`), 1 → 2 workers, calls/s: "
            f"{_change(one, two)}. Two things go wrong. **No TCP_NODELAY:** for "
            "`--workers` > 1 uvicorn 0.54 binds the listening socket itself "
            "(`Config.bind_socket`) with `proto` 0, asyncio only sets TCP_NODELAY on accepted "
            "sockets whose `proto` is IPPROTO_TCP, and Nagle's algorithm then holds the response "
            "body, sent after the headers, until the client's delayed ACK, ~40 ms "
            "(https://github.com/Kludex/uvicorn/issues/3149): `GET /healthz` on a keep-alive "
            "connection, median of 50: "
            + ", ".join(f"{_who(w)} {ms:.1f} ms" for w, ms in meta["healthz_ms"].items())
            + f"; at {c1} client p50 is {two[c1]['p50_ms']:.0f} ms against "
            f"{one[c1]['p50_ms']:.0f} ms with one worker. **One shared listening socket:** "
            "whichever worker wakes first accepts the whole burst of connections, and "
            "keep-alive clients stay on it; the busier worker's share of the server's CPU "
            f"(median over rounds): {_busiest(two)}."
        )
    if fixed_spec == "2+reuseport":
        text_.append(
            "`2, SO_REUSEPORT` (`python -m bench.serve reuseport`) runs two single-process "
            "uvicorn servers, each on its own socket bound with SO_REUSEPORT and created as TCP "
            "(so TCP_NODELAY holds), and the kernel spreads the connections (busier process: "
            f"{_busiest(fixed)}). 1 worker → 2 processes, calls/s: {_change(one, fixed)}."
        )
    elif fixed_spec == "2+nodelay":
        text_.append(
            "`2 + TCP_NODELAY fix` (`python -m bench.serve nodelay`, uvicorn's CLI with the "
            "listening socket re-created as TCP) removes the 40 ms stall but not the uneven "
            f"spread (busier worker: {_busiest(fixed)}). 1 worker → 2 workers, "
            f"calls/s: {_change(one, fixed)}."
        )
    if fixed:
        gains = [fixed[c]["calls_per_s"] / one[c]["calls_per_s"] for c in one if c in fixed]
        g = median(gains)
        better = f"{_who(fixed_spec)}" if g > 1.05 else "1 worker" if g < 0.95 else "neither"
        text_.append(
            f"Better on this machine: **{better}** (median change against 1 worker over the "
            f"client counts: {100 * (g - 1):+.0f}%). A second process brings a second GIL; what "
            "it can add is bounded by the two cores, which PostgreSQL and the load generator "
            "share."
        )
    if two:
        g2 = median([two[c]["calls_per_s"] / one[c]["calls_per_s"] for c in one if c in two])
        if g2 < 0.95:
            text_.append(
                f"`uvicorn --workers 2` as started by default is worse than 1 worker "
                f"({100 * (g2 - 1):+.0f}%, median over the client counts)."
            )
    return ["", "### One or two server processes on 2 cores", "", " ".join(text_)]


def _span(rows: Sequence[dict[str, Any]], key: str) -> str:
    vals = [r["cpu"][key] for r in rows]
    return f"{min(vals):.1f}–{max(vals):.1f}"


def _trips(call: dict[str, Any]) -> int:
    ends = call.get("commits", 0) + call.get("rollbacks", 0)
    return len(call["statements"]) + call.get("checkouts", 0) + 2 * ends


def _limits_lines(meta: dict[str, Any]) -> list[str]:
    summary, st, prof = meta["summary"], meta["statements"], meta.get("profile")
    nproc = int(meta["machine"].get("nproc") or 2)
    ours = [s for s in summary if s["side"] == "http"]
    sql = [s for s in summary if s["side"] == "sql"]
    one = sorted((s for s in ours if s["workers"] == "1"), key=lambda s: s["clients"])
    req, apr = st["request"], st["approve"]
    per_call = median(
        [s["cpu"]["server_ms"] + s["cpu"]["pg_ms"] + s["cpu"]["client_ms"] for s in ours]
    )
    busiest = max(ours, key=lambda s: s["cpu"]["busy_pct"])

    def cores(s: dict[str, Any], key: str) -> float:
        return s["cpu"][key] * s["calls_per_s"] / 1000

    bullets = [
        "**CPU per call, most of it in the server's Python.** Per call, across the HTTP rows: "
        f"server {_span(ours, 'server_ms')} ms, PostgreSQL {_span(ours, 'pg_ms')} ms, load "
        f"generator {_span(ours, 'client_ms')} ms (median total {per_call:.1f} ms); the SQL "
        f"baseline needs PostgreSQL {_span(sql, 'pg_ms')} ms and client {_span(sql, 'client_ms')}"
        f" ms. At ~{per_call:.0f} ms a call, {nproc} fully used cores give at most "
        f"{nproc * 1000 / per_call:.0f} calls/s; {GOAL_CALLS:,} calls/s would need about "
        f"{per_call * GOAL_CALLS / 1000:.0f} cores at these costs. The busiest run "
        f"({_who(busiest['workers'])}, {busiest['clients']} clients, "
        f"{_n(busiest['calls_per_s'])} calls/s) kept both cores {busiest['cpu']['busy_pct']:.0f}%"
        f" busy: server {cores(busiest, 'server_ms'):.2f} cores, PostgreSQL "
        f"{cores(busiest, 'pg_ms'):.2f}, load generator {cores(busiest, 'client_ms'):.2f}.",
    ]
    if one:
        top = max(one, key=lambda s: cores(s, "server_ms"))
        bullets.append(
            "**One worker is one GIL.** With 1 worker the server process reaches "
            f"{cores(top, 'server_ms'):.2f} cores at {top['clients']} clients (server CPU per "
            "call × calls/s) while the machine is only "
            f"{top['cpu']['busy_pct']:.0f}% busy: its Python runs one thread at a time, so more "
            "clients add queueing and overhead, not throughput (server CPU per call "
            + ", ".join(f"{s['cpu']['server_ms']:.1f} ms at {s['clients']}" for s in one)
            + " clients: thread hand-offs between the event loop and up to 40 worker threads, "
            "and connection churn)."
        )
    bullets.append(
        f"**Work per call.** The server issues {len(req['statements'])} SQL statements for a "
        f"request and {len(apr['statements'])} for an approval, in "
        f"{req.get('commits', 0) + req.get('rollbacks', 0)} transactions on "
        f"{req.get('checkouts', 0)} pool checkouts (the bearer-token lookup runs in a read "
        "session of its own, rolled back, then the change in a second one), and each checkout "
        "is pre-pinged (`SELECT 1` in autocommit: one more round trip and transaction): "
        f"{_trips(req)} and {_trips(apr)} round trips (statements, pings, BEGIN, COMMIT or "
        "ROLLBACK) against 8 and 9 for the SQL baseline; transactions per call measured in "
        f"pg_stat_database: {median([s['xacts_per_call'] for s in ours]):.1f} against "
        f"{median([s['xacts_per_call'] for s in sql]):.1f}. Request: "
        + ", ".join(f"`{x}`" for x in req["statements"])
        + ". Approve: "
        + ", ".join(f"`{x}`" for x in apr["statements"])
        + "."
        + (
            " The first three reads of each call are the token → user → grants lookup; the "
            "last reads build the response body (organisations, decisions, users)."
            if req["statements"][:3] == ["SELECT api_token", "SELECT app_user", "SELECT role_grant"]
            else ""
        )
    )
    if len(one) > 1:
        drained = one[-1]["new_conns_per_call"] < max(s["new_conns_per_call"] for s in one)
        bullets.append(
            "**Connection churn.** The default pool keeps 10 connections per process (`DANGJIAN_DB_POOL_SIZE`); when more "
            "requests are in flight, each extra one opens a new PostgreSQL connection and "
            "closes it on return (overflow), so PostgreSQL forks a backend for it. New sessions "
            "per call (pg_stat_database) and PostgreSQL CPU per call, 1 worker: "
            + ", ".join(
                f"{s['clients']} client{'s' if s['clients'] > 1 else ''} "
                f"{s['new_conns_per_call']:.2f} and {s['cpu']['pg_ms']:.1f} ms"
                for s in one
            )
            + (
                f" (at {one[-1]['clients']} clients the pool is drained all the time, so "
                "returned connections are handed to waiting requests instead of being closed)."
                if drained
                else "."
            )
        )
        bullets.append(
            "**Latency is queueing.** Above one client the calls wait for the CPU: p50 ≈ "
            "clients ÷ throughput (Little's law), 1 worker: "
            + ", ".join(
                f"{s['clients']} ÷ {_n(s['calls_per_s'])}/s ≈ "
                f"{1000 * s['clients'] / s['calls_per_s']:.0f} ms (measured "
                f"{s['p50_ms']:.0f})"
                for s in one[1:]
            )
            + f"; only a single client keeps p99 ≤ {GOAL_P99_MS:.0f} ms."
        )
    out = ["", "### What limits it", ""]
    out += [f"- {b}" for b in bullets]
    if prof:
        out += _profile_lines(meta, prof)
    return out


def _profile_lines(meta: dict[str, Any], prof: dict[str, Any]) -> list[str]:
    mm = prof["measurement"]
    share = {p["part"]: p["pct"] for p in prof["inclusive"]}
    n_req = len(meta["statements"]["request"]["statements"])
    n_apr = len(meta["statements"]["approve"]["statements"])

    def pct(part: str) -> str:
        return f"{share.get(part, 0):.0f}%"

    out = [
        "",
        f"**Profile** (py-spy {prof['rate']} Hz for {prof['seconds']} s, `--gil --nonblocking`: "
        "only the thread holding the GIL is sampled, i.e. Python CPU time, without pausing the "
        f"server) of the 1-worker server at {meta['args']['profile_clients']} clients "
        f"({_n(mm['calls_per_s'])} calls/s, p99 {mm['p99_ms']:.0f} ms, server "
        f"{mm['cpu']['server_ms']:.1f} ms CPU per call while profiled: py-spy takes CPU too; "
        f"{prof['samples']:,} samples). Share of the samples whose stack holds the part (parts "
        "nest, so shares overlap):",
        "",
        "| part (inclusive) | share of the server's Python CPU |",
        "|---|---:|",
    ]
    out += [f"| {p['part']} | {p['pct']:.0f}% |" for p in prof["inclusive"]]
    out += [
        "",
        "Exclusive, charged to the innermost non-stdlib package on the stack (stdlib time goes "
        "to its caller): "
        + ", ".join(f"{e['owner']} {e['pct']:.0f}%" for e in prof["exclusive"])
        + ". Hottest leaf frames: "
        + ", ".join(f"`{e['frame']}` {e['pct']:.1f}%" for e in prof["leaves"][:6])
        + ".",
        "",
        f"So: SQLAlchemy is {pct('SQLAlchemy, all of it')} of the server's Python CPU (ORM "
        "identity map and row loading, Core statement cache keys and coercion, result "
        f"processing), spread over the {n_req}–{n_apr} statements rather than in one hot spot; "
        "the psycopg driver's Python side "
        f"{pct('psycopg (Python side of the driver)')}; the bearer-token lookup "
        f"{pct('bearer auth dependency (token → Actor, own session)')}; building response "
        f"bodies {pct('response bodies (api/v1/convert.py requests_out)')}; the audit hash chain "
        f"{pct('audit hash chain (states/audit.py append)')}, of which canonical JSON + SHA-256 "
        f"take {share.get('audit event_hash (canonical JSON + SHA-256)', 0):.1f}% of the total "
        "and the chain-head SELECT and the INSERT the rest; requirement checks "
        f"{pct('requirement checks (states/requirements.py)')}; HTTP parsing and the event loop "
        f"(uvicorn + h11) {pct('HTTP protocol (uvicorn + h11)')}; FastAPI dependency solving "
        f"{pct('FastAPI dependency solving')}; pydantic "
        f"{pct('pydantic (validation + serialisation)')}; jsonable_encoder "
        f"{pct('fastapi jsonable_encoder')}. No bcrypt on this path (tokens are SHA-256 "
        "digests).",
    ]
    return out


def write_section(path: Path, section: str) -> None:
    """Replace this benchmark's section of `path` (between its markers), or append it."""
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION_START in current and SECTION_END in current:
        head, rest = current.split(SECTION_START, 1)
        tail = rest.split(SECTION_END, 1)[1].lstrip("\n")
        new = head + section + (("\n" + tail) if tail else "")
    else:
        new = current.rstrip("\n") + "\n\n" + section
    path.write_text(new)


def load_meta() -> dict[str, Any]:
    lines = [json.loads(x) for x in JSONL.read_text().splitlines() if x.startswith("{")]
    return next(r for r in reversed(lines) if r.get("meta"))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", default="1,4,16,32", help="comma-separated client counts")
    ap.add_argument(
        "--workers",
        default="1,2,2+reuseport",
        help="server variants: worker counts, each optionally +reuseport or +nodelay "
        "(bench/serve.py)",
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.5, help="length of each measurement")
    ap.add_argument("--branches", type=int, default=5000, help="branches (one run each/campaign)")
    ap.add_argument("--committees", type=int, default=50, help="parents of the branches")
    ap.add_argument("--http-pool", type=int, default=1500, help="runs per HTTP measurement")
    ap.add_argument("--sql-pool", type=int, default=4000, help="runs per SQL measurement")
    ap.add_argument("--warmup-pool", type=int, default=300)
    ap.add_argument("--warmup-seconds", type=float, default=2.0)
    ap.add_argument("--py-spy", metavar="PATH", help="py-spy executable: profile the server")
    ap.add_argument("--profile-clients", type=int, default=16)
    ap.add_argument("--profile-seconds", type=float, default=12.0)
    ap.add_argument(
        "--noise",
        type=float,
        default=10.0,
        help="repeat a measurement during which other work took more than this %% of the CPUs",
    )
    ap.add_argument("--retries", type=int, default=2, help="repeats per noisy measurement")
    ap.add_argument("--spares", type=int, default=8, help="spare HTTP run pools for repeats")
    ap.add_argument(
        "--wait-idle", type=float, default=120, help="wait up to this many s for a quiet machine"
    )
    ap.add_argument("--db", default="dj_bench_http")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    ap.add_argument("--out", default=str(REPO / "BENCHMARKS.md"), help="file to update")
    ap.add_argument("--no-write", action="store_true", help="do not touch BENCHMARKS.md")
    ap.add_argument("--report-only", action="store_true", help="re-render from the last results")
    args = ap.parse_args(argv)
    if not args.report_only:
        run_bench(args)
    if not args.no_write:
        write_section(Path(args.out), render(load_meta()))
        note(f"updated {args.out}")


if __name__ == "__main__":
    main()

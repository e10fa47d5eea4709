"""The command path: how many statements each state change sends, and a dead connection.

The ceilings are what each command needs today; a change that adds a round trip to the hottest
path fails here. Counted are the statements the driver executes (BEGIN/COMMIT included on
SQLite, where they are statements), for a command whose per-process caches are warm.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from api.v1.convert import requests_out
from states import audit, inbox, runs
from states.db import unit_of_work
from states.models import AuditEvent, Decision, InboxItem, OutboxMessage, Request
from tests.api_world import MEETING as API_MEETING
from tests.api_world import build_world
from tests.factories import MEETING
from tests.pgkill import terminate
from tests.test_runs import World

#: Ceilings per command and backend (statements sent by the driver in its transaction).
CEILINGS = {
    "record_evidence": {"sqlite": 7, "postgresql": 5},
    "request_advance": {"sqlite": 7, "postgresql": 2},
    "approve": {"sqlite": 8, "postgresql": 2},
}


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """Collect the statements `engine` sends while the block runs."""
    seen: list[str] = []

    def _log(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()[:6]))

    event.listen(engine, "before_cursor_execute", _log)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _log)


def command(engine: Engine, call: Callable[[Session], Any]) -> tuple[Any, list[str]]:
    with counting(engine) as seen, unit_of_work(engine) as s:
        out = call(s)
    return out, seen


def cycle(engine: Engine, w: World, code: str) -> dict[str, list[str]]:
    """Evidence, request, approve on one run; the statements of each."""
    run_id = w.run(code).id or 0
    w.s.rollback()  # the world's session holds no transaction (SQLite: no write lock)
    sec = w.sec1 if code == "S1" else w.sec2
    counts: dict[str, list[str]] = {}
    _, counts["record_evidence"] = command(
        engine,
        lambda s: runs.record_evidence(s, run_id=run_id, actor=sec, kind="meeting", data=MEETING),
    )
    req, counts["request_advance"] = command(
        engine, lambda s: runs.request_advance(s, run_id=run_id, actor=sec)
    )
    _, counts["approve"] = command(
        engine, lambda s: runs.approve(s, request_id=req.id or 0, actor=w.g1)
    )
    return counts


def test_statements_per_command(engine: Engine, backend: str) -> None:
    with Session(engine, expire_on_commit=False) as session:
        w = World(session)
        cycle(engine, w, "S2")  # warms the per-process caches (templates, calendar)
        counts = cycle(engine, w, "S1")
    for name, seen in counts.items():
        print(name, backend, len(seen), *seen, sep="\n  ")
    over = {name: len(seen) for name, seen in counts.items() if len(seen) > CEILINGS[name][backend]}
    assert not over, (over, counts)


#: Statements per HTTP call on PostgreSQL: the bearer token (read in the call's transaction),
#: the command, and the response body (one read).
HTTP_CEILINGS = {"request": 1 + 2 + 1, "approve": 1 + 2 + 1}


def test_statements_per_http_call(pg_engine: Engine) -> None:
    w = build_world(pg_engine)
    with w.client:
        counts = {}
        for code in ("S2", "S1"):  # the first warms the per-process caches
            run_id = w.runs[code]
            sec = "sec_s1" if code == "S1" else "sec_s2"
            w.post(
                sec,
                f"/api/v1/runs/{run_id}/evidence",
                json={"kind": "meeting", "data": API_MEETING},
            )
            with counting(pg_engine) as counts["request"]:
                made = w.post(sec, f"/api/v1/runs/{run_id}/requests", json={})
            assert made.status_code == 201, made.text
            with counting(pg_engine) as counts["approve"]:
                done = w.post("com_g1", f"/api/v1/requests/{made.json()['id']}/approve", json={})
            assert done.status_code == 200 and done.json()["status"] == "approved", done.text
    print(*(f"{k}: {len(v)} {v}" for k, v in counts.items()), sep="\n")
    over = {k: len(v) for k, v in counts.items() if len(v) > HTTP_CEILINGS[k]}
    assert not over, (over, counts)
    assert done.json()["decisions"][0]["decided_by"]["display_name"]


def _plans(session: Session, like: str) -> tuple[int, int]:
    """(generic, custom) plans PostgreSQL made for the session's prepared statement `like`."""
    row = session.execute(
        text(
            "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
            " WHERE statement LIKE :like"
        ),
        {"like": like},
    ).one()
    return int(row[0]), int(row[1])


def _grow(session: Session, n: int = 5000) -> None:
    """Organisations and people as in a city's tree, and planner statistics for them."""
    session.execute(
        text(
            "INSERT INTO app_user (username, display_name, password_hash, is_active, created_at,"
            " must_change_password) SELECT 'u' || i, '用户' || i, '!', true, now(), false"
            " FROM generate_series(1, :n) AS i"
        ),
        {"n": n},
    )
    session.execute(
        text(
            "INSERT INTO organisation (code, name, kind, path, depth, member_count, created_at,"
            " updated_at) SELECT 'X' || i, '支部' || i, '党支部', 'X' || i || '/', 1, 3, now(),"
            " now() FROM generate_series(1, :n) AS i"
        ),
        {"n": n},
    )
    session.commit()
    for table in ("app_user", "organisation", "decision"):
        session.execute(text(f"ANALYZE {table}"))
    session.commit()


def test_a_commands_answer_is_read_with_a_generic_plan(pg_engine: Engine) -> None:
    """The statement that reads a command's answer takes scalar parameters only, so PostgreSQL
    settles on its generic plan; with list parameters it planned it afresh on every call."""
    w = build_world(pg_engine)
    with w.client:
        run_id = w.runs["S1"]
        w.post("sec_s1", f"/api/v1/runs/{run_id}/evidence", json=_meeting())
        made = w.post("sec_s1", f"/api/v1/runs/{run_id}/requests", json={})
        w.post("com_g1", f"/api/v1/requests/{made.json()['id']}/approve", json={})
    with Session(pg_engine) as s:
        _grow(s)  # the sizes at which the list form stopped getting a generic plan
        req = s.get(Request, made.json()["id"])
        assert req is not None
        bodies = [requests_out(s, [req])[0] for _ in range(15)]  # one connection: its statements
        generic, custom = _plans(s, "%AS k, decision.request_id%")
    assert bodies[-1].decisions[0].decided_by.display_name and len(bodies[-1].chain) == 1
    assert generic >= 5 and custom <= 5, (generic, custom)


def test_an_http_change_reads_its_token_in_its_own_transaction(pg_engine: Engine) -> None:
    """The bearer token, the actor's grants and the change: one connection, one COMMIT."""
    w = build_world(pg_engine)
    seen: list[tuple[int, bool, str]] = []  # backend, autocommit, statement
    commits: list[int] = []

    def _statement(conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        dbapi = conn.connection.dbapi_connection
        seen.append((dbapi.info.backend_pid, dbapi.autocommit, statement[:300]))

    def _commit(conn: Any) -> None:
        commits.append(conn.connection.dbapi_connection.info.backend_pid)

    with w.client:
        run_id = w.runs["S1"]
        w.post("sec_s1", f"/api/v1/runs/{run_id}/evidence", json=_meeting())
        event.listen(pg_engine, "before_cursor_execute", _statement)
        event.listen(pg_engine, "commit", _commit)
        try:
            made = w.post("sec_s1", f"/api/v1/runs/{run_id}/requests", json={})
        finally:
            event.remove(pg_engine, "before_cursor_execute", _statement)
            event.remove(pg_engine, "commit", _commit)
    assert made.status_code == 201, made.text
    assert "api_token" in seen[0][2] and not any("api_token" in st for *_, st in seen[1:])
    assert not any(autocommit for _, autocommit, _ in seen), seen
    assert len({pid for pid, *_ in seen}) == 1 and commits == [seen[0][0]], (seen, commits)


def test_a_granted_extension_resolves_the_runs_escalations(engine: Engine) -> None:
    """督办 notices of the run resolve with the grant; its reminders and other runs' stay."""
    with Session(engine, expire_on_commit=False) as session:
        w = World(session)
        run, other = w.run("S1"), w.run("S2")
        for run_id, kind in ((run.id, "overdue"), (run.id, "reminder"), (other.id, "overdue")):
            inbox.post(session, user_ids=[w.sec1.user_id], kind=kind, title="督办", run_id=run_id)
        session.commit()
        assert run.deadline is not None
        new = run.deadline + timedelta(days=7)
        req = w.do(
            runs.request_extension, run_id=run.id, actor=w.sec1, new_deadline=new, reason="任务重"
        )
        w.do(runs.approve, request_id=req.id, actor=w.g1)
        items = session.execute(select(InboxItem)).scalars().all()
        state = {(i.run_id, i.kind): i.resolved_at is not None for i in items}
    assert state == {
        (run.id, "overdue"): True,
        (run.id, "reminder"): False,
        (other.id, "overdue"): False,
    }


# --- a connection the database server drops ----------------------------------------------------


def _kill_on_write(engine: Engine, url: str, times: int) -> list[int]:
    """Terminate the backend of the next `times` command writes just before they are sent."""
    killed: list[int] = []

    def _before(conn: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        if statement.startswith("WITH w_") and len(killed) < times:
            pid = conn.connection.dbapi_connection.info.backend_pid
            killed.append(pid)
            terminate(url, [pid])

    event.listen(engine, "before_cursor_execute", _before)
    return killed


def _meeting() -> dict[str, Any]:
    return {"kind": "meeting", "data": API_MEETING}


def _state(engine: Engine, request_id: int) -> tuple[str, int, int, int]:
    with Session(engine) as s:
        status = s.execute(select(Request.status).where(Request.id == request_id)).scalar_one()
        decisions = s.execute(select(func.count()).select_from(Decision)).scalar_one()
        advanced = s.execute(
            select(func.count()).where(AuditEvent.action == "stage.advanced")
        ).scalar_one()
        notices = s.execute(
            select(func.count()).where(OutboxMessage.event_kind == "request_approved")
        ).scalar_one()
    return str(status), int(decisions), int(advanced), int(notices)


@pytest.mark.parametrize("backend", ["postgresql"])
def test_idle_connections_dropped_by_the_server_are_replaced(engine: Engine, db_url: str) -> None:
    w = build_world(engine)
    run = w.runs["S1"]
    assert w.post("sec_s1", f"/api/v1/runs/{run}/evidence", json=_meeting()).status_code == 201
    terminate(db_url)  # every pooled connection of the app dies while idle
    r = w.post("sec_s1", f"/api/v1/runs/{run}/requests", json={})
    assert r.status_code == 201, r.text
    with Session(engine) as s:
        assert s.execute(select(func.count()).select_from(Request)).scalar_one() == 1


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_write_on_a_killed_connection_is_retried_once_or_503(engine: Engine, db_url: str) -> None:
    w = build_world(engine)
    run = w.runs["S1"]
    assert w.post("sec_s1", f"/api/v1/runs/{run}/evidence", json=_meeting()).status_code == 201
    req = w.post("sec_s1", f"/api/v1/runs/{run}/requests", json={}).json()["id"]
    killed = _kill_on_write(engine, db_url, times=2)  # the attempt and its one retry
    r = w.post("com_g1", f"/api/v1/requests/{req}/approve", json={})
    assert len(killed) == 2 and r.status_code == 503, r.text
    assert _state(engine, req) == ("pending", 0, 0, 0)  # nothing of either attempt
    killed.pop()  # one more kill allowed: the first attempt dies, its retry lands
    r = w.post("com_g1", f"/api/v1/requests/{req}/approve", json={})
    assert r.status_code == 200, r.text
    assert _state(engine, req) == ("approved", 1, 1, 1)  # exactly once
    with Session(engine) as s:
        assert audit.verify(s).ok


# --- dangjian serve --------------------------------------------------------------------------


def _listeners(port: int) -> int:
    """Listening TCP sockets on `port` (one per server process with SO_REUSEPORT)."""
    rows = [ln.split() for ln in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    return sum(1 for r in rows if r[1].endswith(f":{port:04X}") and r[3] == "0A")


@pytest.mark.parametrize("backend", ["postgresql"])
def test_serve_runs_one_server_per_worker_on_reuseport_sockets(db_url: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "api.cli", "serve", "--port", str(port), "--workers", "2"]
    env = {**os.environ, "DATABASE_URL": db_url}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240  # a loaded machine starts Python slowly
        while _listeners(port) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _listeners(port) == 2
        for _ in range(6):  # new connections, spread by the kernel; every one answered
            r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10, trust_env=False)
            assert r.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=90)[0].decode()
    assert proc.returncode == 0, out
    assert "服务进程 / server processes: 2" in out and _listeners(port) == 0

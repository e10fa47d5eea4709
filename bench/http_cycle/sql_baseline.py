"""The timed part as hand-written SQL: the same cycle with psycopg 3, one connection per client."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg.types.json import Json

from bench.http_cycle.cpu import Meter
from bench.http_cycle.load import Tally, _result, _slices
from bench.http_cycle.world import Target
from states.audit import GENESIS, event_hash
from states.timeutil import utcnow

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

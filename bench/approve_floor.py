"""The floor of `approve`'s SQL: its own two statements driven with as little Python as possible.

`approve` sends two statements on PostgreSQL (the context read, then one write of
data-modifying CTEs) between BEGIN and COMMIT. This bench captures both from one real approval
(their SQL and parameters, as the driver receives them), then approves pending requests by
sending the same two statements from plain psycopg, with only what must be computed per
approval done in Python (the new version, the audit event chained with `states.audit.chain_rows`, timestamps).
Our full `approve` (`bench.transitions`, processes) and the shared baselines run in the same
invocation, interleaved, so the ratios hold on a drifting host. What the floor reaches is what
this SQL allows with no ORM session, state machine, guard or notice code around it; the gap
to ours is what that code costs.

    python -m bench.approve_floor --n 600 --rounds 3 --conns 1,4
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Json
from sqlalchemy import event
from sqlalchemy.engine import make_url

from bench.common import checkpoint, drop_pg, emit, median, note
from bench.transitions import (
    DEFAULT_BASELINE_DIR,
    _approve_all,
    ensure_baseline_dbs,
    pending_approvals,
    run_baseline,
    time_children,
    time_processes,
    usable_baselines,
    verify,
)
from states.audit import chain_rows
from states.db import make_engine, unit_of_work
from states.runs import approve
from states.timeutil import utcnow
from states.users import Actor

DB = "bench_approve_floor"


def capture(url: str, actor: Actor, request_id: int) -> list[tuple[str, dict[str, Any]]]:
    """The statements and parameters one real approval sends (BEGIN/COMMIT aside)."""
    engine = make_engine(url)
    seen: list[tuple[str, dict[str, Any]]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _keep(_c: Any, _cur: Any, statement: str, params: Any, *_rest: Any) -> None:
        seen.append((statement, dict(params)))

    with unit_of_work(engine) as s:
        approve(s, request_id=request_id, actor=actor)
    engine.dispose()
    if len(seen) != 2 or not seen[1][0].lstrip().startswith("WITH"):
        raise SystemExit(f"expected the context read and one write, got {len(seen)} statements")
    return seen


def _write_params(template: dict[str, Any], ctx: dict[str, Any], rid: int) -> dict[str, Any]:
    """The write's parameters for request `rid`, from its context row."""
    now = utcnow()
    run_id, seq = ctx["id"], ctx["audit_seq"]
    data = {**template["w_audit_data"].obj, "request_id": rid}
    (event,) = chain_rows(
        (seq, ctx["audit_hash"]),
        stream=f"run:{run_id}",
        events=[("stage.advanced", template["w_audit_actor_id"], data)],
        run_id=run_id,
        at=now,
    )
    head = event["hash"]
    payload = {**template["w_outbox_payload"].obj, "run_id": run_id, "request_id": rid}
    return {
        **template,
        "rq_id": rid, "rq_v_decided_at": now, "w_decision_request_id": rid,
        "w_decision_org_id": ctx["current_approver_org_id"], "w_decision_created_at": now,
        "i_now": now, "i_request": rid, "i_run": run_id, "u_id": run_id, "u_seq": seq,
        "u_version": ctx["version"], "u_v_version": ctx["version"] + 1, "u_v_entered_at": now,
        "u_v_deadline": now + timedelta(days=21), "u_v_audit_seq": seq + 1,
        "u_v_audit_hash": head, "w_audit_stream": f"run:{run_id}", "w_audit_seq": seq + 1,
        "w_audit_at": now, "w_audit_run_id": run_id, "w_audit_data": Json(data),
        "w_audit_prev_hash": ctx["audit_hash"], "w_audit_hash": head,
        "w_outbox_dedupe_key": f"request_approved:{rid}", "w_outbox_run_id": run_id,
        "w_outbox_org_id": ctx["org_id"], "w_outbox_payload": Json(payload),
        "w_outbox_next_attempt_at": now, "w_outbox_created_at": now,
    }  # fmt: skip


def _floor_one(
    conn: psycopg.Connection[Any], stmts: list[tuple[str, dict[str, Any]]], rid: int
) -> None:
    (read, read_params), (write, template) = stmts
    with conn.transaction():
        cur = conn.execute(read, {**read_params, "request_id": rid}, prepare=True)
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        ctx = dict(zip([d.name for d in cur.description], row, strict=True))
        counts = conn.execute(write, _write_params(template, ctx, rid), prepare=True).fetchone()
        assert counts is not None and all(n == 1 for n in counts[:2]), counts


def _floor_child(dsn: str, stmts: Any, ids: list[int], barrier: Any, q: Any) -> None:
    with psycopg.connect(dsn) as conn:
        _floor_one(conn, stmts, ids[0])  # connected and prepared before the clock starts
        barrier.wait()
        t0, c0 = time.perf_counter(), time.process_time()
        for rid in ids[1:]:
            _floor_one(conn, stmts, rid)
        q.put((t0, time.perf_counter(), time.process_time() - c0))


def time_floor(dsn: str, stmts: Any, ids: Sequence[int], conns: int) -> dict[str, float]:
    t = time_children(_floor_child, (dsn, stmts), ids, conns)
    n = len(ids) - conns  # each process's first approval is done before its clock starts
    return {"tps": n / t["seconds"], "client_cpu_ms": 1000 * t["cpu"] / n}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=600, help="approvals per measurement")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", default="1,4")
    ap.add_argument("--baseline-python", default="/tmp/baseline-venv/bin/python")
    args = ap.parse_args(argv)
    conns_list = [int(c) for c in args.conns.split(",")]
    baselines = usable_baselines(
        args.baseline_python, DEFAULT_BASELINE_DIR, ["raw_sql", "spiff_peer"]
    )
    ensure_baseline_dbs(baselines)
    per_round = 2 * args.n * len(conns_list)
    url, engine, approver, ids = pending_approvals(DB, per_round * args.rounds + 60, "floor")
    u = make_url(url)
    dsn = f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"
    work = make_engine(url)
    _approve_all(work, approver, ids[1:50])  # per-process caches warm, as in a service
    work.dispose()
    stmts = capture(url, approver, ids[0])
    pool, results = list(ids[50:]), []
    for r in range(args.rounds):
        for conns in conns_list:
            for who in ("ours", "floor", *baselines):
                if who in ("ours", "floor"):
                    chunk, pool = pool[: args.n], pool[args.n :]
                    checkpoint(engine)
                if who == "ours":
                    t = time_processes(url, approver, chunk, conns)
                    row = {
                        "tps": len(chunk) / t["seconds"],
                        "client_cpu_ms": 1000 * t["cpu"] / len(chunk),
                    }
                elif who == "floor":
                    row = time_floor(dsn, stmts, chunk, conns)
                else:
                    out = run_baseline(
                        args.baseline_python, DEFAULT_BASELINE_DIR, who, max(1, args.n // 6), conns
                    )
                    row = {"tps": out["tps"], "client_cpu_ms": out["client_cpu_ms"]}
                if who in ("ours", "floor"):
                    verify(engine, chunk)  # approved, moved, one event and one notice each
                results.append({"round": r + 1, "script": who, "conns": conns, **row})
                emit({"bench": "approve_floor", **results[-1]})
        note(f"round {r + 1}/{args.rounds} done")
    for conns in conns_list:
        meds = {
            w: median([x["tps"] for x in results if x["script"] == w and x["conns"] == conns])
            for w in ("ours", "floor", *baselines)
        }
        cpu = {
            w: median(
                [x["client_cpu_ms"] for x in results if x["script"] == w and x["conns"] == conns]
            )
            for w in meds
        }
        ratios = {
            f"{a}/{b}": round(meds[a] / meds[b], 3)
            for a in ("ours", "floor")
            for b in meds
            if b != a
        }
        emit({"bench": "approve_floor", "summary": True, "conns": conns, "median_tps": {k: round(v, 1) for k, v in meds.items()},
              "median_client_cpu_ms": {k: round(v, 3) for k, v in cpu.items()}, "ratios": ratios})  # fmt: skip
    engine.dispose()
    drop_pg(DB)


if __name__ == "__main__":
    main()

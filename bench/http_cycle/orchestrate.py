"""The whole run: setup, servers, the measurement plan (A B A B …), medians, the JSON lines."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from typing import Any

from bench.common import analyze, checkpoint, emit, machine, median, migrated_engine, note
from bench.http_cycle.checks import statements_per_call, verify_cycles
from bench.http_cycle.constants import JSONL, REPO, RESULTS, SPEC
from bench.http_cycle.cpu import DbStats, Meter, wait_idle
from bench.http_cycle.facts import code_state, pg_settings
from bench.http_cycle.load import healthz_ms, measure_http
from bench.http_cycle.profiling import profile_run
from bench.http_cycle.server import Server
from bench.http_cycle.sql_baseline import measure_sql
from bench.http_cycle.world import (
    build_world,
    conninfo,
    drop_db,
    fresh_db,
    launch_runs,
    record_meetings,
)


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

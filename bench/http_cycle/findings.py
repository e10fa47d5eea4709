"""The prose findings of the BENCHMARKS.md section: goal, worker counts, limits and the profile."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.common import median
from bench.http_cycle.constants import GOAL_CALLS, GOAL_P99_MS
from bench.http_cycle.labels import _n, _who


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

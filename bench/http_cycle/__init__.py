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

from bench.http_cycle.checks import statements_per_call, verify_cycles
from bench.http_cycle.cli import main
from bench.http_cycle.constants import (
    API,
    CLK_TCK,
    GOAL_CALLS,
    GOAL_P99_MS,
    JSONL,
    MEETING,
    PROFILE_RAW,
    REPO,
    RESULTS,
    ROOT,
    SECTION_END,
    SECTION_START,
    SPEC,
    TEMPLATE,
)
from bench.http_cycle.cpu import (
    DbStats,
    Meter,
    Proc,
    cpu_snapshot,
    cpu_split,
    machine_busy,
    wait_idle,
)
from bench.http_cycle.facts import code_state, git, pg_settings
from bench.http_cycle.labels import LABELS
from bench.http_cycle.load import Tally, healthz_ms, measure_http
from bench.http_cycle.orchestrate import run_bench, summarize
from bench.http_cycle.profiling import FRAME, INCLUSIVE, profile_run, summarize_profile
from bench.http_cycle.report import load_meta, render, write_section
from bench.http_cycle.server import Server, free_port
from bench.http_cycle.sql_baseline import (
    CLOSE_REQUEST,
    INSERT_DECISION,
    INSERT_EVENT,
    INSERT_OUTBOX,
    INSERT_REQUEST,
    LAST_EVENT,
    LOCK_RUN,
    MOVE_RUN,
    SET_PENDING,
    measure_sql,
    sql_approve,
    sql_request,
)
from bench.http_cycle.world import (
    Target,
    World,
    build_world,
    conninfo,
    copy_rows,
    drop_db,
    fresh_db,
    launch_runs,
    record_meetings,
)

__all__ = [
    "API",
    "CLK_TCK",
    "CLOSE_REQUEST",
    "FRAME",
    "GOAL_CALLS",
    "GOAL_P99_MS",
    "INCLUSIVE",
    "INSERT_DECISION",
    "INSERT_EVENT",
    "INSERT_OUTBOX",
    "INSERT_REQUEST",
    "JSONL",
    "LABELS",
    "LAST_EVENT",
    "LOCK_RUN",
    "MEETING",
    "MOVE_RUN",
    "PROFILE_RAW",
    "REPO",
    "RESULTS",
    "ROOT",
    "SECTION_END",
    "SECTION_START",
    "SET_PENDING",
    "SPEC",
    "TEMPLATE",
    "DbStats",
    "Meter",
    "Proc",
    "Server",
    "Tally",
    "Target",
    "World",
    "build_world",
    "code_state",
    "conninfo",
    "copy_rows",
    "cpu_snapshot",
    "cpu_split",
    "drop_db",
    "free_port",
    "fresh_db",
    "git",
    "healthz_ms",
    "launch_runs",
    "load_meta",
    "machine_busy",
    "main",
    "measure_http",
    "measure_sql",
    "pg_settings",
    "profile_run",
    "record_meetings",
    "render",
    "run_bench",
    "sql_approve",
    "sql_request",
    "statements_per_call",
    "summarize",
    "summarize_profile",
    "verify_cycles",
    "wait_idle",
    "write_section",
]

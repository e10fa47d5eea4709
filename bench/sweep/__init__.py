"""One `deadline_sweep` over 100,000 and 1,000,000 runs: does its time follow the runs due?

Data (not timed), on a fresh PostgreSQL database `bench_sweep`, all by COPY: 1 bureau →
hospitals → general branches → N branches (党支部, `bench.common.build_tree`), one campaign of
`chuangxian_zhengyou` over them (template version frozen with `freeze_template`, the campaign row
built as `launch_campaign` builds it) and one run per branch, in the template's first five
stages, deadlines spread over six months from 30 days after `as_of`, and one fired timer of the
past per run in `timer_fired` (a reminder of the first stage), so that the sweep's NOT EXISTS and
unique key meet a table as large as `run`, as in production. Then, per case, exactly D runs
(every (N/D)th id) get a deadline inside one of the sweep's windows at `as_of` (half in the
3-working-day reminder window, half in the level-1 overdue window), and the rest stay in the
future, beyond every reminder.

Per case and repeat (A B A B …), each on a fresh due set (this sweep's rows of `timer_fired` and
its scratch copy deleted, the outboxes truncated, escalation levels reset, VACUUM ANALYZE,
CHECKPOINT): ours, `workflows.jobs.sweep(engine, "deadline_sweep", as_of)` (planning plus every
window), then a second sweep right after
(nothing due); then the SQL baseline, hand-written SQL through psycopg 3 over the same windows:
per batch of 5,000 one statement (`INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING` into a
scratch copy of `timer_fired`, the outbox rows with their JSON payload built in SQL into a
scratch copy of `outbox`, the escalation level for overdue windows), one transaction per batch;
then its second sweep. Finally the Prefect flow (`workflows.flows.deadline_sweep`) under
`prefect_test_harness` (start-up not timed), paired with direct sweeps on the same data.

    .venv/bin/python -m bench.sweep                  # 10-15 minutes; updates BENCHMARKS.md
    .venv/bin/python -m bench.sweep --report-only    # re-render from bench/results/sweep.jsonl
"""

from __future__ import annotations

from bench.sweep.cases import keep, loadavg, prefect_case, run_bench, run_case
from bench.sweep.cli import main
from bench.sweep.constants import (
    AS_OF,
    EXPLAIN_TXT,
    FUTURE_DAYS,
    FUTURE_FROM,
    GOAL_SECONDS,
    JSONL,
    PROFILE_TXT,
    REPO,
    RESULTS,
    RUN_COLUMNS,
    SECTION_END,
    SECTION_START,
    TEMPLATE,
    TIMER_COLUMNS,
)
from bench.sweep.data import (
    SCRATCH,
    World,
    build,
    fired_rows,
    future_index,
    insert_campaign,
    reset,
    set_due,
    vacuum,
)
from bench.sweep.diagnose import analysis, explain, explain_big, profile_sweep
from bench.sweep.measure import StatementClock, ours
from bench.sweep.report import render, write_section
from bench.sweep.sql_baseline import BASELINE_BATCH, baseline, conninfo

__all__ = [
    "AS_OF",
    "BASELINE_BATCH",
    "EXPLAIN_TXT",
    "FUTURE_DAYS",
    "FUTURE_FROM",
    "GOAL_SECONDS",
    "JSONL",
    "PROFILE_TXT",
    "REPO",
    "RESULTS",
    "RUN_COLUMNS",
    "SCRATCH",
    "SECTION_END",
    "SECTION_START",
    "TEMPLATE",
    "TIMER_COLUMNS",
    "StatementClock",
    "World",
    "analysis",
    "baseline",
    "build",
    "conninfo",
    "explain",
    "explain_big",
    "fired_rows",
    "future_index",
    "insert_campaign",
    "keep",
    "loadavg",
    "main",
    "ours",
    "prefect_case",
    "profile_sweep",
    "render",
    "reset",
    "run_bench",
    "run_case",
    "set_due",
    "vacuum",
    "write_section",
]

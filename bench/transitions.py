"""Stage transitions: our final `approve` against the shared baselines, in one invocation.

Our unit of work is the last approval of a pending advance request: it moves the run one stage
(compare-and-set on `run.version`), writes a decision, an audit event and an outbox row, and
commits, one `states.db.unit_of_work` (one Session, one transaction) per approval. The
baselines' unit is "lock one unit's row, move it one stage, write audit + outbox, commit".

Setup (not timed): one campaign per measurement over a tree of N branches; every run gets its
meeting recorded (`record_evidence`) and an advance requested (`request_advance`), so each has a
pending one-step request whose requirements are met. Only the approvals are timed.

Each round runs, in this order, ours then every baseline at 1 connection, then the same at 4
connections (A B A B …); medians are over rounds. Our connections are threads in one process,
each with its own Session and pooled connection (`--workers process` for one process each, as
the baselines do). Baselines run as subprocesses of their own venv; each gets its own database
`baseline_<script>`, because they drop and recreate tables named run/audit/outbox.

    python -m bench.transitions --n 600 --rounds 5 --conns 1,4 --workers thread,process
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select, text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, col

from bench.common import (
    PG_ADMIN_URL,
    ROOT_CODE,
    TreeShape,
    analyze,
    build_tree,
    checkpoint,
    drop_pg,
    emit,
    fresh_pg,
    machine,
    make_actor,
    median,
    migrated_engine,
    note,
)
from bench.http_cycle.cpu import CLK_TCK, cpu_snapshot
from states.campaigns import launch_campaign
from states.db import make_engine, unit_of_work
from states.models import AuditEvent, OutboxMessage, Request, Role, Run
from states.runs import approve, record_evidence, request_advance
from states.users import Actor, load_actor

TEMPLATE = "chuangxian_zhengyou"
MEETING = {"date": "2026-03-01", "title": "动员大会", "expected": 3, "present": 3}
BASELINES = ("raw_sql", "spiff_peer", "naive_transitions")
REPO = Path(__file__).resolve().parent.parent
DEFAULT_BASELINE_DIR = (REPO / ".." / "shared" / "baselines").resolve()


# --- setup -----------------------------------------------------------------------------------


def launch(url: str, labels: Sequence[str]) -> list[int]:
    """Launch one campaign per label over the whole tree (one after another); return their ids.

    Sequential on purpose: two first launches of a template version at once race to store it
    (`freeze_template`), and the loser fails on `uq_template_version`.
    """
    engine = make_engine(url)
    ids = []
    with Session(engine, expire_on_commit=False) as s:
        for label in labels:
            campaign = launch_campaign(s, template_key=TEMPLATE, root_code=ROOT_CODE, name=label)
            s.commit()
            ids.append(campaign.id or 0)
    engine.dispose()
    return ids


def prepare_campaign(url: str, requester_id: int, campaign_id: int, every: int = 100) -> list[int]:
    """Give every run of the campaign its meeting and a pending advance request.

    Returns the pending request ids in run order. Commits every `every` runs (setup is not
    timed; batching only shortens it).
    """
    engine = make_engine(url)
    try:
        with Session(engine, expire_on_commit=False) as s:
            requester = load_actor(s, requester_id)
            run_ids = list(
                s.execute(
                    select(col(Run.id))
                    .where(col(Run.campaign_id) == campaign_id)
                    .order_by(col(Run.id))
                ).scalars()
            )
            request_ids: list[int] = []
            for i, run_id in enumerate(run_ids, 1):
                assert run_id is not None
                record_evidence(s, run_id=run_id, actor=requester, kind="meeting", data=MEETING)
                req = request_advance(s, run_id=run_id, actor=requester)
                request_ids.append(req.id or 0)
                if i % every == 0:
                    s.commit()
                    s.expunge_all()
            s.commit()
        return request_ids
    finally:
        engine.dispose()


def _prepare_child(args: tuple[str, int, int]) -> list[int]:
    return prepare_campaign(*args)


def prepare_all(url: str, requester_id: int, labels: Sequence[str], procs: int) -> list[list[int]]:
    """Launch one campaign per label and prepare its runs, `procs` processes at a time.

    Returns the pending request ids of each campaign, in label order.
    """
    jobs = [(url, requester_id, cid) for cid in launch(url, labels)]
    if procs <= 1:
        return [_prepare_child(j) for j in jobs]
    with mp.get_context("fork").Pool(procs) as pool:
        return pool.map(_prepare_child, jobs, chunksize=1)


def pending_approvals(
    dbname: str, branches: int, label: str
) -> tuple[str, Engine, Actor, list[int]]:
    """A fresh database `dbname` with one campaign over `branches` branches, every run with its
    meeting and a pending advance request: its URL, a migrated engine, an approver (admin at
    the root) and the pending request ids (for the profiling benches)."""
    url = fresh_pg(dbname)
    engine = migrated_engine(url)
    build_tree(engine, TreeShape(branches=branches, branches_per_general=50))
    with Session(engine, expire_on_commit=False) as s:
        requester = make_actor(s, "bench-requester", ROOT_CODE, Role.COMMITTEE)
        approver = make_actor(s, "bench-approver", ROOT_CODE, Role.ADMIN)
    (cid,) = launch(url, [label])
    ids = prepare_campaign(url, requester.user_id, cid)
    analyze(engine, "run", "request", "evidence", "audit_event", "outbox", "decision")
    return url, engine, approver, ids


# --- the timed part --------------------------------------------------------------------------


def _approve_all(engine: Engine, actor: Actor, request_ids: Sequence[int]) -> None:
    for rid in request_ids:
        with unit_of_work(engine) as s:
            approve(s, request_id=rid, actor=actor)


def _warm(engine: Engine, conns: int) -> None:
    """Open `conns` pooled connections before the clock starts."""
    held = [engine.connect() for _ in range(conns)]
    for c in held:
        c.execute(text("SELECT 1"))
    for c in held:
        c.close()


def _slices(ids: Sequence[int], conns: int) -> list[list[int]]:
    return [list(ids[k::conns]) for k in range(conns)]  # round-robin, as the baselines do


def time_threads(url: str, actor: Actor, request_ids: Sequence[int], conns: int) -> dict[str, Any]:
    """Approve every request with `conns` threads (own Session and connection each)."""
    engine = make_engine(url, pool_size=max(5, conns))
    _warm(engine, conns)
    barrier = threading.Barrier(conns + 1)
    spans: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def worker(ids: list[int]) -> None:
        try:
            barrier.wait()
            t0 = time.perf_counter()
            _approve_all(engine, actor, ids)
            spans.append((t0, time.perf_counter()))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in _slices(request_ids, conns)]
    for t in threads:
        t.start()
    c0 = time.process_time()
    barrier.wait()
    for t in threads:
        t.join()
    cpu = time.process_time() - c0
    engine.dispose()
    if errors:
        raise errors[0]
    return {"seconds": max(e for _, e in spans) - min(s for s, _ in spans), "cpu": cpu}


def _process_child(url: str, actor: Actor, ids: list[int], barrier: Any, q: Any) -> None:
    engine = make_engine(url)
    _warm(engine, 1)
    barrier.wait()
    t0, c0 = time.perf_counter(), time.process_time()
    _approve_all(engine, actor, ids)
    q.put((t0, time.perf_counter(), time.process_time() - c0))
    engine.dispose()


def time_processes(
    url: str, actor: Actor, request_ids: Sequence[int], conns: int
) -> dict[str, Any]:
    """Approve every request with `conns` processes (one connection each), like the baselines."""
    return time_children(_process_child, (url, actor), request_ids, conns)


def time_children(
    child: Any, args: tuple[Any, ...], request_ids: Sequence[int], conns: int
) -> dict[str, Any]:
    """Run `child(*args, ids, barrier, queue)` in `conns` forked processes, each on its slice
    of the ids; each starts its clock at the barrier and puts (start, end, CPU seconds).
    Returns the span from the first start to the last end, and the CPU of all of them."""
    ctx = mp.get_context("fork")
    barrier, q = ctx.Barrier(conns), ctx.Queue()
    procs = [
        ctx.Process(target=child, args=(*args, ids, barrier, q))
        for ids in _slices(request_ids, conns)
    ]
    for p in procs:
        p.start()
    spans = [q.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"approval worker exited with {p.exitcode}")
    secs = max(e for _, e, _ in spans) - min(s for s, _, _ in spans)
    return {"seconds": secs, "cpu": sum(c for _, _, c in spans)}


def verify(engine: Engine, request_ids: Sequence[int]) -> None:
    """Every request approved, its run one stage on, one stage.advanced event and one notice."""
    ids = list(request_ids)
    mine = col(Request.id).in_(ids)
    with Session(engine) as s:

        def count(stmt: Any) -> int:
            return int(s.execute(stmt).scalar_one())

        approved = count(
            select(func.count()).select_from(Request).where(mine, col(Request.status) == "approved")
        )
        moved = count(
            select(func.count())
            .select_from(Run)
            .join(Request, col(Request.run_id) == col(Run.id))
            .where(mine, col(Run.stage) == "pledge", col(Run.pending_request_id).is_(None))
        )
        events = count(
            select(func.count())
            .select_from(AuditEvent)
            .join(Request, col(Request.run_id) == col(AuditEvent.run_id))
            .where(mine, col(AuditEvent.action) == "stage.advanced")
        )
        keys = [f"request_approved:{i}" for i in ids]
        notices = count(
            select(func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.dedupe_key).in_(keys))
        )
    n = len(ids)
    assert approved == moved == events == notices == n, (approved, moved, events, notices, n)


def run_ours(
    url: str, engine: Engine, actor: Actor, request_ids: Sequence[int], conns: int, workers: str
) -> dict[str, Any]:
    checkpoint(engine)
    timer = time_threads if workers == "thread" else time_processes
    db = make_url(url).database or ""
    before = cpu_snapshot([], db)
    t = timer(url, actor, request_ids, conns)
    pg_ticks = cpu_snapshot([], db)["pg"] - before["pg"]
    verify(engine, request_ids)
    n = len(request_ids)
    return {
        "script": "ours" if workers == "thread" or conns == 1 else "ours_proc",
        "conns": conns,
        "workers": workers,
        "transitions": n,
        "seconds": round(t["seconds"], 3),
        "tps": round(n / t["seconds"], 1),
        "client_cpu_ms": round(1000 * t["cpu"] / n, 3),
        # PostgreSQL's CPU for the database's backends and the cluster's own processes
        # (checkpointer, WAL writer) while ours ran (the baselines' is not separable from
        # their set-up: they run as whole subprocesses).
        "pg_cpu_ms": round(1000 * pg_ticks / CLK_TCK / n, 3),
    }


def statements_per_approval(url: str, actor: Actor, request_ids: Sequence[int]) -> list[str]:
    """Approve the requests, logging the last one's statements; return their verb and table.

    The earlier approvals warm the per-process caches (templates), as in a running service.
    """
    engine = make_engine(url)
    *warm, probe = request_ids
    _approve_all(engine, actor, warm)
    seen: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _log(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        words = statement.split()
        verb = words[0].upper()
        table = ""
        for key in ("FROM", "INTO", "UPDATE"):
            if key in words:
                table = words[words.index(key) + 1]
                break
        seen.append(f"{verb} {table}".strip())

    with unit_of_work(engine) as s:
        approve(s, request_id=probe, actor=actor)
    engine.dispose()
    return seen


# --- baselines -------------------------------------------------------------------------------


def baseline_dsn(script: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(PG_ADMIN_URL)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname=baseline_{script}"


def ensure_baseline_dbs(scripts: Sequence[str]) -> None:
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        have = set(conn.execute(text("SELECT datname FROM pg_database")).scalars())
        for script in scripts:
            if f"baseline_{script}" not in have:
                conn.execute(text(f'CREATE DATABASE "baseline_{script}"'))
    admin.dispose()


def run_baseline(
    python: str, directory: Path, script: str, units: int, conns: int
) -> dict[str, Any]:
    """Run one baseline script as a subprocess; return its JSON line."""
    env = {**os.environ, "BASELINE_DSN": baseline_dsn(script)}
    cmd = [python, f"{script}.py", "--n", str(units), "--conns", str(conns)]
    proc = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(lines[-1])
    return out


def usable_baselines(python: str, directory: Path, wanted: Sequence[str]) -> list[str]:
    """Return the baselines whose imports work in the baseline venv (say why others don't)."""
    probes = {
        "raw_sql": "import psycopg",
        "spiff_peer": "import SpiffWorkflow, psycopg",
        "naive_transitions": "import transitions, sqlmodel, psycopg",
    }
    ok = []
    for script in wanted:
        if not (directory / f"{script}.py").exists():
            note(f"baseline {script}: no {script}.py in {directory}; skipped")
            continue
        probe = probes.get(script, "import psycopg")
        res = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
        if res.returncode != 0:
            note(f"baseline {script}: cannot import in {python}; skipped\n{res.stderr[-500:]}")
            continue
        ok.append(script)
    return ok


# --- main ------------------------------------------------------------------------------------


def summarize(results: list[dict[str, Any]], conns_list: Sequence[int]) -> list[dict[str, Any]]:
    """Median tx/s per (script, conns), with ratios of ours to each baseline."""
    rows: list[dict[str, Any]] = []
    for conns in conns_list:
        meds: dict[str, float] = {}
        for script in ["ours", "ours_proc", *BASELINES]:
            rs = [r for r in results if r["script"] == script and r["conns"] == conns]
            if not rs:
                continue
            tps = [r["tps"] for r in rs]
            meds[script] = median(tps)
            rows.append(
                {
                    "bench": "transitions",
                    "summary": True,
                    "script": script,
                    "conns": conns,
                    "rounds": len(rs),
                    "transitions": rs[0]["transitions"],
                    "median_tps": round(meds[script], 1),
                    "min_tps": min(tps),
                    "max_tps": max(tps),
                    "median_client_cpu_ms": round(median([r["client_cpu_ms"] for r in rs]), 3),
                    **(
                        {"median_pg_cpu_ms": round(median([r["pg_cpu_ms"] for r in rs]), 3)}
                        if "pg_cpu_ms" in rs[0]
                        else {}
                    ),
                }
            )
        for row in rows:
            if row["conns"] == conns and row["script"].startswith("ours"):
                mine = meds[row["script"]]
                row["ratios"] = {
                    f"{row['script']}/{b}": round(mine / meds[b], 3)
                    for b in meds
                    if not b.startswith("ours")
                }
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=600, help="transitions per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--conns", default="1,4", help="comma-separated connection counts")
    ap.add_argument(
        "--workers",
        default="thread",
        help="how our connections run: thread, process, or thread,process (both, for conns > 1)",
    )
    ap.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated, or none")
    ap.add_argument("--baseline-dir", default=str(DEFAULT_BASELINE_DIR))
    ap.add_argument("--baseline-python", default="/tmp/baseline-venv/bin/python")
    ap.add_argument("--pg-db", default="bench_transitions")
    ap.add_argument("--setup-procs", type=int, default=2, help="processes preparing the runs")
    ap.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = ap.parse_args(argv)
    conns_list = [int(c) for c in args.conns.split(",")]
    modes = [m.strip() for m in args.workers.split(",")]
    if not modes or any(m not in ("thread", "process") for m in modes):
        raise SystemExit("--workers: thread, process or thread,process")
    units = max(1, round(args.n / 6))  # a baseline unit makes 6 transitions
    baseline_dir = Path(args.baseline_dir)
    wanted = [b for b in args.baselines.split(",") if b and b != "none"]
    baselines = usable_baselines(args.baseline_python, baseline_dir, wanted)
    ensure_baseline_dbs(baselines)

    t_setup = time.perf_counter()
    url = fresh_pg(args.pg_db)
    engine = migrated_engine(url)
    shape = TreeShape(branches=args.n, branches_per_general=50, generals_per_hospital=10)
    build_tree(engine, shape)
    with Session(engine, expire_on_commit=False) as s:
        # A bureau-level committee member requests on the branches' behalf (代办); a bureau
        # admin approves (the approver of a mobilize request is the general branch: one step).
        requester = make_actor(s, "bench-requester", ROOT_CODE, Role.COMMITTEE)
        approver = make_actor(s, "bench-approver", ROOT_CODE, Role.ADMIN)
    plan = [
        (r, c, m)
        for r in range(args.rounds)
        for c in conns_list
        for m in (modes if c > 1 else modes[:1])
    ]
    labels = [f"bench r{r + 1} c{c} {m}" for r, c, m in plan]
    note(f"setup: {len(plan)} campaigns × {args.n} runs (record_evidence + request_advance)")
    ready = prepare_all(url, requester.user_id, labels, args.setup_procs)
    prepared = dict(zip(plan, ready, strict=True))
    analyze(engine, "run", "request", "evidence", "audit_event", "outbox", "decision")
    with Session(engine, expire_on_commit=False) as s:
        probe = launch_campaign(s, template_key=TEMPLATE, root_code="G00001", name="bench probe")
        s.commit()
    probe_rids = prepare_campaign(url, requester.user_id, probe.id or 0)[:3]
    statements = statements_per_approval(url, approver, probe_rids)
    setup_s = time.perf_counter() - t_setup
    note(f"setup done in {setup_s:.0f}s")

    results: list[dict[str, Any]] = []
    t_timed = time.perf_counter()
    for r in range(args.rounds):
        for conns in conns_list:
            for mode in modes if conns > 1 else modes[:1]:
                row = run_ours(url, engine, approver, prepared[(r, conns, mode)], conns, mode)
                results.append({"bench": "transitions", "round": r + 1, **row})
                emit(results[-1])
            for script in baselines:
                out = run_baseline(args.baseline_python, baseline_dir, script, units, conns)
                results.append({"bench": "transitions", "round": r + 1, **out})
                emit(results[-1])
        note(f"round {r + 1}/{args.rounds} done")

    for row in summarize(results, conns_list):
        emit(row)
    emit(
        {
            "bench": "transitions",
            "meta": True,
            "n": args.n,
            "baseline_units": units,
            "rounds": args.rounds,
            "workers": modes,
            "baselines": baselines,
            "skipped_baselines": [b for b in wanted if b not in baselines],
            "setup_seconds": round(setup_s, 1),
            "statements_per_approval": len(statements),
            "statements": statements,
            "timed_part_seconds": round(time.perf_counter() - t_timed, 1),
            "machine": machine(engine),
        }
    )
    engine.dispose()
    if not args.keep:
        drop_pg(args.pg_db)


if __name__ == "__main__":
    main()

"""Concurrent changes to one run on PostgreSQL, with real connections: exactly one wins."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select

from states import runs
from states.db import unit_of_work
from states.errors import Conflict
from states.models import AuditEvent, Decision, Request, Role
from tests.factories import make_user
from tests.test_runs import World

THREADS = 8


def _race(engine: Engine, calls: list[Callable[[Session], Any]]) -> tuple[int, list[Exception]]:
    """Run each call in its own thread and transaction, all released at once."""
    barrier = threading.Barrier(len(calls))
    wins: list[Any] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def worker(call: Callable[[Session], Any]) -> None:
        barrier.wait()
        try:
            with unit_of_work(engine) as s:
                result = call(s)
            with lock:
                wins.append(result)
        except Exception as exc:  # collected and asserted below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=worker, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return len(wins), errors


def test_concurrent_requests_one_wins(pg_engine: Engine) -> None:
    with Session(pg_engine, expire_on_commit=False) as session:
        w = World(session)
        run_id = w.run("S1").id or 0
        w.fill(run_id, w.sec1)
    wins, errors = _race(
        pg_engine,
        [lambda s: runs.request_advance(s, run_id=run_id, actor=w.sec1) for _ in range(THREADS)],
    )
    assert wins == 1
    assert len(errors) == THREADS - 1 and all(isinstance(e, Conflict) for e in errors), errors
    with Session(pg_engine) as s:
        assert s.exec(select(func.count()).select_from(Request)).one() == 1
        submitted = s.exec(
            select(func.count()).where(AuditEvent.action == "request.submitted")
        ).one()
        assert submitted == 1


def test_concurrent_approvals_one_wins(pg_engine: Engine) -> None:
    with Session(pg_engine, expire_on_commit=False) as session:
        w = World(session)
        members = [make_user(session, f"g1_{i}", ("G1", Role.COMMITTEE)) for i in range(THREADS)]
        run_id = w.run("S1").id or 0
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    calls = [(lambda s, a=a: runs.approve(s, request_id=req.id or 0, actor=a)) for a in members]
    wins, errors = _race(pg_engine, calls)
    assert wins == 1
    assert all(isinstance(e, Conflict) for e in errors), errors
    with Session(pg_engine) as s:
        assert s.exec(select(func.count()).select_from(Decision)).one() == 1
        advanced = s.exec(select(func.count()).where(AuditEvent.action == "stage.advanced")).one()
        assert advanced == 1


def test_withdraw_races_approve(pg_engine: Engine) -> None:
    with Session(pg_engine, expire_on_commit=False) as session:
        w = World(session)
        run_id = w.run("S1").id or 0
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    wins, errors = _race(
        pg_engine,
        [
            lambda s: runs.withdraw(s, request_id=req.id or 0, actor=w.sec1),
            lambda s: runs.approve(s, request_id=req.id or 0, actor=w.g1),
        ],
    )
    assert wins == 1 and len(errors) == 1 and isinstance(errors[0], Conflict)
    with Session(pg_engine) as s:
        status = s.get_one(Request, req.id).status
        assert status in {"withdrawn", "approved"}


def test_first_launches_at_once_share_one_template_version(pg_engine: Engine) -> None:
    from states.campaigns import launch_campaign
    from states.models import Campaign, TemplateVersion
    from tests.factories import make_tree

    with Session(pg_engine) as session:
        make_tree(session)
    wins, errors = _race(
        pg_engine,
        [
            lambda s, root=root: launch_campaign(s, template_key="jinwei_shengji", root_code=root)
            for root in ("H1", "H2", "G1", "B")
        ],
    )
    assert wins == 4 and errors == []
    with Session(pg_engine) as s:
        assert s.exec(select(func.count()).select_from(TemplateVersion)).one() == 1
        assert s.exec(select(func.count()).select_from(Campaign)).one() == 4


def test_a_withdrawal_between_reading_a_request_and_its_run_is_caught(
    pg_engine: Engine, monkeypatch: Any
) -> None:
    """The interleaving that once let both win: the approver reads the request (and now, in
    the same query, its run), the requester withdraws and commits, then the approver writes."""
    from states.errors import ConcurrentUpdate

    with Session(pg_engine, expire_on_commit=False) as session:
        w = World(session)
        run_id = w.run("S1").id or 0
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    load_request = runs._load_request_ctx
    fired = []

    def withdraw_after_reading(session: Session, rid: int, actor: Any) -> Any:
        out = load_request(session, rid, actor)
        if not fired:
            fired.append(True)
            with unit_of_work(pg_engine) as other:
                runs.withdraw(other, request_id=req.id or 0, actor=w.sec1)
        return out

    monkeypatch.setattr(runs, "_load_request_ctx", withdraw_after_reading)
    try:
        with unit_of_work(pg_engine) as s:
            runs.approve(s, request_id=req.id or 0, actor=w.g1)
    except ConcurrentUpdate:
        pass
    else:
        raise AssertionError("the approval of a withdrawn request went through")
    with Session(pg_engine) as s:
        assert s.get_one(Request, req.id).status == "withdrawn"
        assert s.exec(select(func.count()).select_from(Decision)).one() == 0

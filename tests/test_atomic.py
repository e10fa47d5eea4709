"""A state change, its audit event and its outbox rows commit together or not at all."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from states import audit, run_core, run_writes, runs
from states.db import unit_of_work
from states.models import AuditEvent, OutboxMessage, Request, Run
from tests.test_runs import World


def _counts(session: Session) -> tuple[int, int, int]:
    session.expire_all()
    return tuple(  # type: ignore[return-value]
        session.exec(select(func.count()).select_from(m)).one()
        for m in (AuditEvent, OutboxMessage, Request)
    )


@pytest.mark.parametrize("breaks", ["outbox", "audit"])
def test_failure_after_the_state_change_leaves_nothing(
    session: Session, engine: Any, monkeypatch: pytest.MonkeyPatch, breaks: str
) -> None:
    w = World(session)
    run_id = w.run("S1").id or 0
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    before_run = session.get_one(Run, run_id)
    session.refresh(before_run)
    stage, version = before_run.stage, before_run.version
    before = _counts(session)

    def boom(*_a: Any, **_k: Any) -> None:
        raise RuntimeError("disk full")

    if breaks == "outbox":  # every write of the command sent, then a failure before COMMIT
        real_apply = run_writes.apply

        def apply_then_fail(*a: Any, **k: Any) -> None:
            real_apply(*a, **k)
            boom()

        monkeypatch.setattr(run_core, "apply", apply_then_fail)
    else:  # the audit event cannot be built
        real = audit.chain_rows

        def chain_then_fail(head: Any, **kw: Any) -> Any:
            if any(action == "stage.advanced" for action, *_ in kw["events"]):
                boom()
            return real(head, **kw)

        monkeypatch.setattr(audit, "chain_rows", chain_then_fail)
    request_id = req.id or 0
    session.commit()  # end the test session's read transaction (SQLite: release its lock)
    with pytest.raises(RuntimeError), unit_of_work(engine) as s:
        runs.approve(s, request_id=request_id, actor=w.g1)
    after_run = session.get_one(Run, run_id)
    session.refresh(after_run)
    assert (after_run.stage, after_run.version) == (stage, version)
    assert after_run.pending_request_id == req.id
    assert _counts(session) == before
    assert session.get_one(Request, req.id).status == "pending"

"""The audit log: append-only in the database, hash-chained, and `verify` names the first break."""

from __future__ import annotations

import itertools
import json

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from states import audit, runs
from states.models import AuditEvent
from tests.test_runs import World


def _tamper(session: Session, engine: Engine, sql: str, **params: object) -> None:
    """Change the log behind the application's back, as someone with database access could."""
    session.commit()  # end the test session's read transaction (SQLite: release its lock)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE audit_event DISABLE TRIGGER audit_event_append_only"))
            conn.execute(text(sql), params)
            conn.execute(text("ALTER TABLE audit_event ENABLE TRIGGER audit_event_append_only"))
        else:
            conn.execute(text("DROP TRIGGER audit_event_no_update"))
            conn.execute(text("DROP TRIGGER audit_event_no_delete"))
            conn.execute(text(sql), params)


def _activity(w: World) -> int:
    run_id = w.run("S1").id or 0
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=req.id, actor=w.g1)
    w.fill(run_id, w.sec1)
    return run_id


def _events(session: Session, run_id: int) -> list[AuditEvent]:
    stmt = select(AuditEvent).where(AuditEvent.stream == f"run:{run_id}").order_by(AuditEvent.seq)
    return list(session.exec(stmt))


def test_chain_verifies(session: Session) -> None:
    w = World(session)
    run_id = _activity(w)
    events = _events(session, run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    report = audit.verify(session)
    assert report.ok and report.events == len(session.exec(select(AuditEvent)).all())


def test_database_refuses_update_and_delete(session: Session) -> None:
    w = World(session)
    _activity(w)
    for sql in ("UPDATE audit_event SET action = 'x'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(sql))
        session.rollback()


def test_tampered_row_is_named(session: Session, engine: Engine) -> None:
    w = World(session)
    run_id = _activity(w)
    victim = _events(session, run_id)[2]
    _tamper(
        session,
        engine,
        "UPDATE audit_event SET data = :d WHERE id = :id",
        d='{"forged": true}',
        id=victim.id,
    )
    session.expire_all()
    report = audit.verify(session)
    assert report.broken is not None
    assert report.broken.event_id == victim.id
    assert report.broken.stream == f"run:{run_id}" and report.broken.seq == 3
    assert "本条被改动" in report.broken.reason


def test_deleted_row_breaks_the_next_link(session: Session, engine: Engine) -> None:
    w = World(session)
    run_id = _activity(w)
    events = _events(session, run_id)
    _tamper(session, engine, "DELETE FROM audit_event WHERE id = :id", id=events[1].id)
    report = audit.verify(session)
    assert report.broken is not None
    assert report.broken.event_id == events[2].id
    assert "序号不连续" in report.broken.reason


def test_rehashed_row_breaks_the_following_link(session: Session, engine: Engine) -> None:
    """A forger who recomputes a row's own hash still breaks the next event's link."""
    w = World(session)
    run_id = _activity(w)
    events = _events(session, run_id)
    target = events[1]
    forged = {**target.data, "forged": True}
    new_hash = audit.hash_of(target, data=forged)
    _tamper(
        session,
        engine,
        "UPDATE audit_event SET data = :d, hash = :h WHERE id = :id",
        d=json.dumps(forged),
        h=new_hash,
        id=target.id,
    )
    report = audit.verify(session)
    assert report.broken is not None and report.broken.event_id == events[2].id
    assert "前一事件" in report.broken.reason


def test_cli_verify_names_the_broken_event(
    session: Session, engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from api.cli import main

    w = World(session)
    run_id = _activity(w)
    victim = _events(session, run_id)[1]
    monkeypatch.setenv("DATABASE_URL", db_url)
    session.commit()  # release the test session's read transaction before the CLI connects
    assert CliRunner().invoke(main, ["audit", "verify"]).exit_code == 0
    _tamper(session, engine, "UPDATE audit_event SET actor_id = 999 WHERE id = :id", id=victim.id)
    result = CliRunner().invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert f"事件 #{victim.id}" in result.output and f"run:{run_id} 第 2 条" in result.output

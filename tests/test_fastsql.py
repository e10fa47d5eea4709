"""`states.fastsql`: statements compiled once and sent on the driver's cursor (PostgreSQL), or
through SQLAlchemy (SQLite), give the same rows, the same errors and the same events."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.base import instance_state
from sqlmodel import Session

from states.db import make_engine, read_session, unit_of_work
from states.errors import Conflict
from states.fastsql import Prepared, detached, in_list, mirror, rows
from states.models import Campaign, Organisation, OutboxMessage, Run
from states.run_core import load_run
from tests.factories import make_tree

ORG = Organisation.__table__  # type: ignore[attr-defined]
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]
BY_ID = Prepared(select(ORG).where(ORG.c.id == bindparam("id")))


def test_rows_match_sqlalchemys_own(session: Session) -> None:
    orgs = make_tree(session)
    session.commit()
    s1 = orgs["S1"]
    got = rows(session.connection(), BY_ID, {"id": s1.id})
    assert len(got) == 1
    assert tuple(got[0]) == tuple(session.execute(select(ORG).where(ORG.c.id == s1.id)).one())
    created = got[0][list(ORG.c.keys()).index("created_at")]
    assert created.tzinfo is not None and created.utcoffset().total_seconds() == 0
    assert rows(session.connection(), BY_ID, {"id": 10**6}) == []


def test_a_driver_error_is_sqlalchemys_and_leaves_nothing(session: Session) -> None:
    orgs = make_tree(session)
    session.commit()
    dup = Prepared(
        insert(ORG)
        .values(
            code=bindparam("code"),
            name="重复",
            kind="党支部",
            path=bindparam("path"),
            created_at=bindparam("at", type_=ORG.c.created_at.type),
            updated_at=bindparam("at", type_=ORG.c.updated_at.type),
        )
        .returning(ORG.c.id)
    )
    now = datetime.now(UTC)
    with pytest.raises(IntegrityError):
        rows(session.connection(), dup, {"code": "S1", "path": "/x/", "at": now})
    session.rollback()
    assert len(rows(session.connection(), dup, {"code": "S9", "path": "/y/", "at": now})) == 1
    session.rollback()
    names = session.execute(select(ORG.c.name).where(ORG.c.code.in_(["S9"]))).all()
    assert names == [] and orgs["S1"].code == "S1"


def test_python_side_defaults_go_through_sqlalchemy(session: Session) -> None:
    """An insert that leaves a column to its Python-side default is not sent raw (the default
    would be lost): it still gets the default."""
    stmt = (
        insert(OUTBOX)
        .values(dedupe_key=bindparam("key"), event_kind="x", payload={}, status="pending")
        .returning(OUTBOX.c.id)
    )
    prepared = Prepared(stmt)
    assert prepared.compiled(session.get_bind().dialect) is None
    rows(session.connection(), prepared, {"key": "k1"})
    got = session.execute(select(OUTBOX.c.attempts, OUTBOX.c.created_at)).one()
    assert got[1] is not None


def test_in_list_takes_a_list_on_both_backends(session: Session) -> None:
    orgs = make_tree(session)
    session.commit()
    want = sorted(orgs[c].id or 0 for c in ("S1", "S2", "H2"))
    q = Prepared(None, lambda d: select(ORG.c.id).where(in_list(ORG.c.id, "ids", d)))
    assert sorted(r[0] for r in rows(session.connection(), q, {"ids": want})) == want
    assert rows(session.connection(), q, {"ids": []}) == []


def test_cursor_events_see_the_statement(session: Session) -> None:
    orgs = make_tree(session)
    session.commit()
    seen: list[str] = []

    def log(_c: Any, _cur: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", log)
    try:
        rows(session.connection(), BY_ID, {"id": orgs["S1"].id})
    finally:
        event.remove(engine, "before_cursor_execute", log)
    sent = [q for q in seen if not q.startswith("BEGIN")]  # SQLite's own BEGIN IMMEDIATE
    assert len(sent) == 1 and sent[0].startswith("SELECT") and "organisation" in sent[0]


def test_detached_objects_are_never_flushed(session: Session, world: Any) -> None:
    """A run's context is read into no session: changing it (or mirroring a command's values
    on it) writes nothing; only the command's own statements do."""
    run_id = next(iter(world.runs.values()))
    with Session(session.get_bind()) as s:
        ctx = load_run(s, run_id, None, with_facts=True)
        state = instance_state(ctx.run)
        assert state.session_id is None and state.key == (Run, (run_id,), None)
        assert isinstance(ctx.campaign, Campaign) and ctx.loaded_facts is not None
        mirror(ctx.run, {"stage": "elsewhere"})
        ctx.org.name = "改过的名字"
        s.commit()
        assert ctx.run.stage == "elsewhere"
    with Session(session.get_bind()) as s:
        again = load_run(s, run_id, None)
        assert again.run.stage != "elsewhere" and again.org.name != "改过的名字"


def test_detached_keeps_every_column(session: Session) -> None:
    orgs = make_tree(session)
    session.commit()
    (row,) = rows(session.connection(), BY_ID, {"id": orgs["S2"].id})
    org = detached(Organisation, ORG.c.keys(), row)
    assert org.code == "S2" and org.path == orgs["S2"].path
    assert org.model_dump()["name"] == orgs["S2"].name


def test_a_fresh_process_reads_a_context_before_any_orm_query(session: Session, world: Any) -> None:
    """A server process whose first request is a command builds its objects before the ORM
    ever ran a query: the mappers are configured then, not by an earlier query."""
    run_id = next(iter(world.runs.values()))
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    url = engine.url.render_as_string(hide_password=False)
    code = (
        "import sys\n"
        "from sqlmodel import Session\n"
        "from states.db import make_engine\n"
        "from states.run_core import load_run\n"
        f"with Session(make_engine({url!r})) as s:\n"
        f"    print(load_run(s, {run_id}, None).campaign.template_version_id)\n"
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().isdigit()


def test_a_read_session_keeps_the_connections_prepared_statements(pg_engine: Engine) -> None:
    """A page's read ends without ROLLBACK on PostgreSQL: psycopg drops every statement it has
    prepared on a connection at ROLLBACK, and the next commands on it would be planned afresh.
    Its transaction is READ ONLY, so ending it with COMMIT cannot write anything."""
    engine = make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with Session(engine) as s:
            make_tree(s)
            s.commit()
        for _ in range(6):  # psycopg prepares a statement on its fifth execution
            with read_session(engine) as s:
                rows(s.connection(), BY_ID, {"id": 1})
        with engine.connect() as conn:
            prepared = conn.connection.dbapi_connection._prepared  # type: ignore[union-attr]
            assert any(b"FROM organisation" in key[0] for key in prepared._names)
        with pytest.raises(DBAPIError, match="read-only transaction"), read_session(engine) as s:
            s.execute(update(ORG).values(name="改名"))
        with read_session(engine) as s:
            assert "改名" not in {r[0] for r in s.execute(select(ORG.c.name))}
    finally:
        engine.dispose()


def test_a_refused_command_keeps_prepared_statements_and_undoes_its_writes(
    pg_engine: Engine,
) -> None:
    """A command refused before it wrote anything (a 409 after its read) ends with COMMIT, so
    the connection keeps its prepared statements; one refused after writing is rolled back."""
    engine = make_engine(pg_engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with Session(engine) as s:
            make_tree(s)
            s.commit()
        for _ in range(6):
            with pytest.raises(Conflict), unit_of_work(engine) as s:
                rows(s.connection(), BY_ID, {"id": 1})
                raise Conflict("已处理")
        with engine.connect() as conn:
            prepared = conn.connection.dbapi_connection._prepared  # type: ignore[union-attr]
            assert any(b"FROM organisation" in key[0] for key in prepared._names)
        with pytest.raises(Conflict), unit_of_work(engine) as s:
            s.execute(update(ORG).values(name="改名"))
            raise Conflict("写后才发现冲突")
        with read_session(engine) as s:
            assert "改名" not in {r[0] for r in s.execute(select(ORG.c.name))}
    finally:
        engine.dispose()

"""The command path: how many statements each state change sends, and a dead connection.

The ceilings are what each command needs today; a change that adds a round trip to the hottest
path fails here. Counted are the statements the driver executes (BEGIN/COMMIT included on
SQLite, where they are statements), for a command whose per-process caches are warm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from states import runs
from states.db import unit_of_work
from tests.factories import MEETING
from tests.test_runs import World

#: Ceilings per command and backend (statements sent by the driver in its transaction).
CEILINGS = {
    "record_evidence": {"sqlite": 7, "postgresql": 6},
    "request_advance": {"sqlite": 11, "postgresql": 10},
    "approve": {"sqlite": 14, "postgresql": 13},
}


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """Collect the statements `engine` sends while the block runs."""
    seen: list[str] = []

    def _log(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(" ".join(statement.split()[:6]))

    event.listen(engine, "before_cursor_execute", _log)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", _log)


def command(engine: Engine, call: Callable[[Session], Any]) -> tuple[Any, list[str]]:
    with counting(engine) as seen, unit_of_work(engine) as s:
        out = call(s)
    return out, seen


def cycle(engine: Engine, w: World, code: str) -> dict[str, list[str]]:
    """Evidence, request, approve on one run; the statements of each."""
    run_id = w.run(code).id or 0
    w.s.rollback()  # the world's session holds no transaction (SQLite: no write lock)
    sec = w.sec1 if code == "S1" else w.sec2
    counts: dict[str, list[str]] = {}
    _, counts["record_evidence"] = command(
        engine,
        lambda s: runs.record_evidence(s, run_id=run_id, actor=sec, kind="meeting", data=MEETING),
    )
    req, counts["request_advance"] = command(
        engine, lambda s: runs.request_advance(s, run_id=run_id, actor=sec)
    )
    _, counts["approve"] = command(
        engine, lambda s: runs.approve(s, request_id=req.id or 0, actor=w.g1)
    )
    return counts


def test_statements_per_command(engine: Engine, backend: str) -> None:
    with Session(engine, expire_on_commit=False) as session:
        w = World(session)
        cycle(engine, w, "S2")  # warms the per-process caches (templates, calendar)
        counts = cycle(engine, w, "S1")
    for name, seen in counts.items():
        print(name, backend, len(seen), *seen, sep="\n  ")
    over = {name: len(seen) for name, seen in counts.items() if len(seen) > CEILINGS[name][backend]}
    assert not over, (over, counts)

"""Ours, timed: one full `deadline_sweep`, with the time inside cursor.execute by kind of statement."""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bench.sweep.data import World
from states import timers
from workflows import jobs


def _bucket(statement: str) -> str:
    s = " ".join(statement.split())[:400]
    if s.startswith("INSERT INTO timer_fired") or (
        s.startswith("WITH") and "INSERT INTO timer_fired" in s
    ):
        return "INSERT timer_fired … SELECT run (due rows)"
    if s.startswith("INSERT INTO outbox"):
        return "INSERT outbox (payloads)"
    if s.startswith("UPDATE run"):
        return "UPDATE run escalation_level"
    if "FROM run JOIN organisation" in s:
        return "SELECT run ⋈ organisation (details)"
    if "template_version" in s:
        return "SELECT campaign ⋈ template_version"
    if "calendar_override" in s:
        return "SELECT calendar_override"
    return "other statements"


class StatementClock:
    """Time spent inside cursor.execute on `engine`, by kind of statement; keeps one example."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.examples: dict[str, tuple[str, Any]] = {}  # the slowest call of each kind
        self._slowest: dict[str, float] = defaultdict(float)
        self._t: list[float] = []

    def _before(self, *args: Any) -> None:
        self._t.append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, params: Any, *rest: Any) -> None:
        dt = time.perf_counter() - self._t.pop()
        b = _bucket(statement)
        self.seconds[b] += dt
        self.calls[b] += 1
        if dt > self._slowest[b]:
            self._slowest[b] = dt
            self.examples[b] = (statement, params)

    def __enter__(self) -> StatementClock:
        event.listen(self.engine, "before_cursor_execute", self._before)
        event.listen(self.engine, "after_cursor_execute", self._after)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine, "before_cursor_execute", self._before)
        event.remove(self.engine, "after_cursor_execute", self._after)


def ours(world: World, clock: StatementClock | None = None) -> tuple[float, int, float]:
    """One full sweep; return (seconds, fired, seconds of planning)."""
    t0 = time.perf_counter()
    with Session(world.engine) as s:
        timers.plan_deadlines(s, world.as_of)
    plan_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = jobs.sweep(world.engine, "deadline_sweep", world.as_of)
    return time.perf_counter() - t0, report.total, plan_s

"""Sweeps that overlap or die half-way: nothing is sent twice and nothing is lost.

Both run real processes: two sweeps at once against PostgreSQL (row locks and the unique key
decide who fires what), and a sweep killed (`os._exit`) with a batch written but not committed,
then run again, on both databases.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from states.models import OutboxMessage, TimerFired
from tests.test_timers import Sim, at
from workflows import jobs

ROOT = Path(__file__).resolve().parent.parent
AS_OF = at(date(2026, 3, 19), 9)  # three days after the first deadline: level 1 for all 50


def _counts(engine: Engine) -> tuple[int, int, int]:
    with Session(engine) as s:
        timers = s.execute(select(func.count()).select_from(TimerFired)).scalar_one()
        outbox = s.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.event_kind) == "overdue")
        ).scalar_one()
        distinct = s.execute(
            select(func.count(func.distinct(OutboxMessage.run_id))).where(
                col(OutboxMessage.event_kind) == "overdue"
            )
        ).scalar_one()
    return timers, outbox, distinct


def _python(script: str, url: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": url}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), url, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


SWEEP = """
    import sys, time
    from datetime import datetime
    from pathlib import Path
    from states.db import make_engine
    from workflows import jobs
    url, as_of, go = sys.argv[1], datetime.fromisoformat(sys.argv[2]), Path(sys.argv[3])
    engine = make_engine(url)
    engine.connect().close()
    while not go.exists():
        time.sleep(0.01)
    report = jobs.sweep(engine, "deadline_sweep", as_of, batch=3)
    print(report.total)
"""


@pytest.mark.postgres_only
def test_two_sweeps_at_once_fire_each_notice_once(pg_engine: Engine, tmp_path: Path) -> None:
    Sim.build(pg_engine)
    url = pg_engine.url.render_as_string(hide_password=False)
    go = tmp_path / "go"
    procs = [_python(SWEEP, url, AS_OF.isoformat(), str(go)) for _ in range(2)]
    time.sleep(1.0)  # both connected and waiting
    go.touch()
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    fired = [int(out.strip()) for out, _ in outputs]
    assert sum(fired) == 50  # every run once, split between the two sweeps
    assert _counts(pg_engine) == (50, 50, 50)


KILLED = """
    import os, sys
    from contextlib import contextmanager
    from datetime import datetime
    from sqlalchemy import func, select
    from sqlmodel import Session
    from states import timers
    from states.models import TimerFired
    from states.db import make_engine
    from workflows import jobs
    url, as_of = sys.argv[1], datetime.fromisoformat(sys.argv[2])
    engine = make_engine(url)
    batches = committed = 0

    @contextmanager
    def session_factory():
        global batches, committed
        with Session(engine) as session:
            yield session
            written = session.execute(select(func.count()).select_from(TimerFired)).scalar_one()
            if written > committed:
                batches += 1
                committed = written
            if batches == 3:
                session.flush()
                os._exit(9)  # killed with the third batch written but not committed
            session.commit()

    plan = jobs.plan(engine, "deadline_sweep", as_of)
    timers.fire_all(session_factory, plan.windows, as_of, limit=5)
"""


def test_a_sweep_killed_half_way_completes_on_rerun(engine: Engine) -> None:
    Sim.build(engine)
    url = engine.url.render_as_string(hide_password=False)
    proc = _python(KILLED, url, AS_OF.isoformat())
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 9, err
    assert _counts(engine) == (10, 10, 10)  # two batches committed, the third rolled back
    report = jobs.sweep(engine, "deadline_sweep", AS_OF)
    assert report.counts == {"overdue_L1": 40}
    assert _counts(engine) == (50, 50, 50)
    assert jobs.sweep(engine, "deadline_sweep", AS_OF).total == 0

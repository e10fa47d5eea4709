"""The Prefect flows under Prefect's own test harness (one temporary server for the session).

The set-based logic is tested directly and fast elsewhere (tests/test_timers.py); here the flows
themselves: they fire through tasks, default `as_of` to the run's scheduled start, write the
calendar warning into the flow run's log, deliver through the relay and publish bulletins.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from states.campaigns import launch_campaign
from states.models import Bulletin, InboxItem, OutboxMessage, Role, Run
from tests.factories import make_tree, make_user
from tests.test_timers import Sim, at

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def app_db(engine: Engine, monkeypatch: pytest.MonkeyPatch, harness: None) -> Engine:
    """The flows find the application database through DATABASE_URL, as in production."""
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return engine


def _flow_run(state: Any) -> Any:
    from prefect import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(state.state_details.flow_run_id)


def _logs(flow_run_id: UUID) -> list[str]:
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    return [log.message for log in logs]


def test_deadline_sweep_flow_fires_once_and_defaults_to_its_scheduled_time(
    app_db: Engine,
) -> None:
    from workflows.flows import deadline_sweep

    Sim.build(app_db)
    first = deadline_sweep(as_of=at(date(2026, 3, 19), 9))
    assert first["counts"] == {"overdue_L1": 50}
    assert deadline_sweep(as_of=at(date(2026, 3, 19), 9))["counts"] == {}

    state = deadline_sweep(return_state=True)
    result = state.result(_sync=True)
    flow_run = _flow_run(state)
    assert datetime.fromisoformat(result["as_of"]) == flow_run.expected_start_time
    with Session(app_db) as s:
        assert s.execute(select(func.max(Run.escalation_level))).scalar_one() == 3


def test_a_year_without_calendar_data_is_a_warning_in_the_flow_log(app_db: Engine) -> None:
    from workflows.flows import deadline_sweep

    Sim.build(app_db)
    state = deadline_sweep(as_of=at(date(2027, 3, 3), 9), return_state=True)
    assert state.is_completed()
    assert any("2027 年的法定节假日数据尚未发布" in m for m in _logs(_flow_run(state).id))
    assert any("2027" in w for w in state.result(_sync=True)["warnings"])


def test_bulletin_and_delivery_flows(app_db: Engine) -> None:
    from workflows.flows import deliver_notifications, weekly_bulletin

    sim = Sim.build(app_db)
    monday = at(date(2026, 3, 23), 9)
    result = weekly_bulletin(as_of=monday)
    assert result["counts"] == {f"campaign_{sim.campaign_id}": 6}
    assert weekly_bulletin(as_of=monday)["counts"] == {f"campaign_{sim.campaign_id}": 0}
    report = deliver_notifications()
    with Session(app_db) as s:
        assert s.execute(select(func.count()).select_from(Bulletin)).scalar_one() == 6
        pending = s.execute(
            select(func.count())
            .select_from(OutboxMessage)
            .where(col(OutboxMessage.status) != "done")
        ).scalar_one()
        assert pending == 0
        bulletins = s.execute(
            select(func.count()).select_from(InboxItem).where(col(InboxItem.kind) == "bulletin")
        ).scalar_one()
    assert report["done"] >= 6
    # One committee member on each of the six committees, and the organiser at the root.
    assert bulletins == 7


def test_phase_schedule_flow_tells_runs_a_phase_has_opened(app_db: Engine) -> None:
    from workflows.flows import phase_schedule

    with Session(app_db, expire_on_commit=False) as s:
        make_tree(s)
        make_user(s, "sec_s1", ("S1", Role.SECRETARY))
        launch_campaign(s, template_key="sqsy_fuwuxing", root_code="B", now=at(date(2026, 5, 4), 9))
        s.commit()
    # 15 May: 制定方案 (5/5–5/16), 立项创新 and 选树典型 (both from 5/15) are open; all four
    # branches are still in the first stage, so each hears of all three phases, once.
    assert phase_schedule(as_of=at(date(2026, 5, 15), 9))["counts"] == {
        "phase_open_L1": 4,
        "phase_open_L2": 4,
        "phase_open_L3": 4,
    }
    assert phase_schedule(as_of=at(date(2026, 5, 16), 9))["counts"] == {}
    # 1 June: only 梳理做法 (6/1–7/31) is newly open.
    assert phase_schedule(as_of=at(date(2026, 6, 1), 9))["counts"] == {"phase_open_L4": 4}
    with Session(app_db) as s:
        kinds = s.execute(
            select(OutboxMessage.payload).where(col(OutboxMessage.event_kind) == "phase_opened")
        ).scalars()
        stages = sorted({p["stage"] for p in kinds})
    assert stages == sorted(
        {"制定方案、动员部署", "立项创新、组织实施", "选树典型、示范带动", "梳理做法、总结经验"}
    )

"""Deployments of the flows, with their schedules, and the two ways to run them.

- `serve_all()`: one process serves every deployment (`prefect.serve`): what `dangjian worker`
  does, against `PREFECT_API_URL` or the managed local server.
- `deploy_to_pool(pool, source)`: for several machines, register every flow from source code on a
  work pool (`flow.from_source(path, entrypoint).deploy(...)`); `prefect worker start --pool` on
  each machine then runs them.

Every deployment has `concurrency_limit=1` with the CANCEL_NEW strategy: a sweep that comes due
while the previous one still runs is cancelled, never run alongside it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from workflows.settings import apply_defaults

apply_defaults()  # before Prefect is imported, below

from prefect import Flow, serve  # noqa: E402
from prefect.client.schemas.objects import (  # noqa: E402
    ConcurrencyLimitConfig,
    ConcurrencyLimitStrategy,
)
from prefect.deployments.runner import EntrypointType  # noqa: E402
from prefect.schedules import Cron, Interval, Schedule  # noqa: E402

from states.errors import InvalidInput  # noqa: E402
from workflows.flows import FLOWS  # noqa: E402

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.deployments.runner import RunnerDeployment

TIMEZONE = "Asia/Shanghai"
SWEEP_INTERVAL_ENV = "DANGJIAN_SWEEP_INTERVAL"
DELIVER_INTERVAL_ENV = "DANGJIAN_DELIVER_INTERVAL"
DEFAULT_SWEEP_INTERVAL = 900
DEFAULT_DELIVER_INTERVAL = 30
#: The deployment name of every flow (deployment `deadline_sweep/dangjian`, …).
DEPLOYMENT_NAME = "dangjian"
TAGS = ["dangjian"]


@dataclass(frozen=True)
class Plan:
    """One flow's schedule, readable by people (`describe`) and by Prefect (`schedule`)."""

    flow: str
    interval: int | None = None
    cron: str | None = None

    def schedule(self) -> Schedule:
        if self.interval is not None:
            return Interval(timedelta(seconds=self.interval), timezone=TIMEZONE)
        assert self.cron is not None
        return Cron(self.cron, timezone=TIMEZONE)

    def describe(self) -> str:
        if self.interval is not None:
            return f"每 {self.interval} 秒"
        return {
            "15 0 * * *": "每天 00:15（北京时间）",
            "0 8 * * 1": "每周一 08:00（北京时间）",
        }.get(self.cron or "", f"cron {self.cron}（北京时间）")


def _seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} 应为秒数（正整数），而不是「{raw}」") from None
    if value < 1:
        raise InvalidInput(f"{name} 应为正整数秒数，而不是 {value}")
    return value


def plans() -> list[Plan]:
    """The schedules, in the order of `FLOWS` (intervals from the environment)."""
    sweep = _seconds(SWEEP_INTERVAL_ENV, DEFAULT_SWEEP_INTERVAL)
    deliver = _seconds(DELIVER_INTERVAL_ENV, DEFAULT_DELIVER_INTERVAL)
    by_flow = {
        "deadline_sweep": Plan("deadline_sweep", interval=sweep),
        "approval_sla_sweep": Plan("approval_sla_sweep", interval=sweep),
        "phase_schedule": Plan("phase_schedule", cron="15 0 * * *"),
        "weekly_bulletin": Plan("weekly_bulletin", cron="0 8 * * 1"),
        "deliver_notifications": Plan("deliver_notifications", interval=deliver),
    }
    return [by_flow[name] for name in FLOWS]


def concurrency() -> ConcurrencyLimitConfig:
    """One run at a time per deployment; a run that comes due meanwhile is cancelled."""
    return ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW)


def flow_of(name: str) -> Flow[..., Any]:
    """`FLOWS[name]`, typed (the flows have different signatures)."""
    return cast("Flow[..., Any]", FLOWS[name])


def _common(plan: Plan) -> dict[str, Any]:
    flow = flow_of(plan.flow)
    return {
        "name": DEPLOYMENT_NAME,
        "schedules": [plan.schedule()],
        "concurrency_limit": concurrency(),
        "description": flow.description,
        "tags": TAGS,
    }


def deployments() -> list[RunnerDeployment]:
    """One deployment per flow, with its schedule, for `serve` (module entrypoints)."""
    # Prefect's sync/async dual methods return a coroutine when they see a running event loop
    # in the thread (another library's, e.g. Playwright's sync API): `_sync=True` always asks for
    # the value.
    return [
        cast(
            "RunnerDeployment",
            flow_of(p.flow).to_deployment(  # type: ignore[call-arg]  # async_dispatch's _sync
                **_common(p), entrypoint_type=EntrypointType.MODULE_PATH, _sync=True
            ),
        )
        for p in plans()
    ]


def serve_all(*, limit: int | None = None, print_starting_message: bool = False) -> None:
    """Serve every deployment from this process until SIGINT/SIGTERM."""
    serve(
        *deployments(),
        pause_on_shutdown=False,
        limit=limit,
        print_starting_message=print_starting_message,
    )


def source_root() -> Path:
    """The directory holding the `workflows` package (the project's root)."""
    return Path(__file__).resolve().parent.parent


def deploy_to_pool(
    pool: str, source: str | Path | None = None, *, work_queue: str | None = None
) -> list[tuple[str, UUID]]:
    """Register every flow on work pool `pool`, loaded from `source` on the workers.

    `source` is a directory that exists at the same path on every worker machine (the default:
    this installation's project root) or a git URL Prefect can clone.
    """
    src = str(source) if source is not None else str(source_root())
    done: list[tuple[str, UUID]] = []
    for p in plans():
        remote = cast(
            "Flow[..., Any]",
            flow_of(p.flow).from_source(  # type: ignore[call-arg]
                src, f"workflows/flows.py:{p.flow}", _sync=True
            ),
        )
        deployment_id = remote.deploy(  # type: ignore[call-arg]
            **_common(p),
            work_pool_name=pool,
            work_queue_name=work_queue,
            build=False,
            push=False,
            print_next_steps=False,
            ignore_warnings=True,
            _sync=True,
        )
        done.append((f"{p.flow}/{DEPLOYMENT_NAME}", cast("UUID", deployment_id)))
    return done

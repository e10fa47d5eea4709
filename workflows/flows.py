"""Prefect flows: thin orchestration over the set-based jobs in `workflows.jobs`.

One flow run per sweep, one task per window (each task fires its window in batches of thousands
of runs, one transaction per batch); never a flow or task run per organisation. `as_of` defaults
to the flow run's scheduled start time, so a retried run does exactly the same work.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from states.db import get_engine
from states.timers import Plan, Window
from workflows import jobs


def resolve_as_of(as_of: datetime | None) -> datetime:
    """`as_of` if given, else the flow run's scheduled start (now, outside a flow run)."""
    if as_of is not None:
        return jobs.as_utc(as_of)
    return jobs.as_utc(flow_run.get_scheduled_start_time())


@task(name="plan", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def plan_task(job: str, as_of: datetime) -> Any:
    return jobs.plan(get_engine(), job, as_of)


@task(name="fire-window", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[5, 30, 120])
def fire_window_task(window: Window, as_of: datetime) -> int:
    logger = get_run_logger()
    return jobs.fire_window(get_engine(), window, as_of, log=logger.info)


def _sweep(job: str, as_of: datetime | None) -> dict[str, Any]:
    logger = get_run_logger()
    when = resolve_as_of(as_of)
    plan = cast(Plan, plan_task(job, when))
    for message in plan.warnings:
        logger.warning(message)
    counts: dict[str, int] = {}
    for window in plan.windows:
        n = cast(int, fire_window_task(window, when))
        if n:
            counts[window.count_key()] = counts.get(window.count_key(), 0) + n
    if job == "deadline_sweep" and (closed := jobs.close_surveys(get_engine(), when)):
        counts[jobs.SURVEYS_CLOSED] = closed
    if job == "deadline_sweep":
        counts.update(jobs.sweep_findings(get_engine(), when))
    logger.info("%s（as_of %s）：%s", jobs.JOBS[job], when.isoformat(), counts or "无")
    return {"as_of": when.isoformat(), "counts": counts, "warnings": list(plan.warnings)}


@flow(name="deadline_sweep", log_prints=True)
def deadline_sweep(as_of: datetime | None = None) -> dict[str, Any]:
    """Reminders before deadlines and the overdue ladder up the tree."""
    return _sweep("deadline_sweep", as_of)


@flow(name="approval_sla_sweep", log_prints=True)
def approval_sla_sweep(as_of: datetime | None = None) -> dict[str, Any]:
    """Requests waiting past their SLA: remind the approver, then its parent."""
    return _sweep("approval_sla_sweep", as_of)


@flow(name="phase_schedule", log_prints=True)
def phase_schedule(as_of: datetime | None = None) -> dict[str, Any]:
    """Dated phases: tell every run that has not finished a phase when it opens."""
    return _sweep("phase_schedule", as_of)


@task(name="publish-bulletins", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=10)
def publish_task(campaign_id: int, as_of: datetime) -> int:
    return jobs.publish_bulletins(get_engine(), campaign_id, as_of)


@flow(name="weekly_bulletin", log_prints=True)
def weekly_bulletin(as_of: datetime | None = None) -> dict[str, Any]:
    """Each committee's weekly bulletin and public-notice list, stored and sent."""
    logger = get_run_logger()
    when = resolve_as_of(as_of)
    counts = {f"campaign_{cid}": publish_task(cid, when) for cid in jobs.campaign_ids(get_engine())}
    logger.info("每周简报（as_of %s）：%s", when.isoformat(), counts or "无进行中的活动")
    return {"as_of": when.isoformat(), "counts": counts}


@task(name="relay", cache_policy=NO_CACHE, retries=3, retry_delay_seconds=[5, 15, 60])
def relay_task() -> dict[str, int]:
    return jobs.deliver(get_engine())


@flow(name="deliver_notifications", log_prints=True)
def deliver_notifications() -> dict[str, int]:
    """Send what the outbox holds through the notifications relay (with retries)."""
    report = relay_task()
    get_run_logger().info("发送通知：%s", report)
    return report


FLOWS = {
    "deadline_sweep": deadline_sweep,
    "approval_sla_sweep": approval_sla_sweep,
    "phase_schedule": phase_schedule,
    "weekly_bulletin": weekly_bulletin,
    "deliver_notifications": deliver_notifications,
}

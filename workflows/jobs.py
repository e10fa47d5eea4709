"""The timed jobs as plain functions over an engine; the Prefect flows and `dangjian sweep` call them.

Nothing here imports Prefect: the flows in `workflows.flows` wrap these steps in tasks (with
retries and logs in Prefect's UI); `dangjian sweep` runs them directly when no Prefect server is
configured. Every step is idempotent (see `states.timers`), so a retry or a rerun after a crash
finishes the work without sending anything twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy.engine import Engine

from states import bulletins, timers
from states.db import read_session, unit_of_work
from states.jobs import service as export_jobs
from states.supervision.sweep import sweep as findings_sweep
from states.survey.service import close_due
from states.timers import Plan, Window

LogFn = Callable[[str], None]

#: The jobs, by flow name, with their Chinese labels (for the CLI and the logs).
JOBS = {
    "deadline_sweep": "截止提醒与逾期督办",
    "approval_sla_sweep": "审批超时提醒",
    "phase_schedule": "阶段开启",
    "weekly_bulletin": "每周简报",
    "deliver_notifications": "发送通知",
}


@dataclass
class Report:
    """What a job did: counts by kind, and the warnings it met."""

    job: str
    as_of: datetime
    counts: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = "，".join(f"{k} {v}" for k, v in sorted(self.counts.items())) or "无"
        return f"{JOBS.get(self.job, self.job)}（{self.as_of.isoformat()}）：{parts}"


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime (a naive one is taken as UTC)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def plan(engine: Engine, job: str, as_of: datetime) -> Plan:
    """The windows one job has to fire at `as_of`."""
    with read_session(engine) as session:
        if job == "approval_sla_sweep":
            return timers.plan_approvals(session, as_of)
        full = timers.plan_deadlines(session, as_of)
    wanted = (timers.PHASE_OPEN,) if job == "phase_schedule" else (timers.REMINDER, timers.OVERDUE)
    full.windows = [w for w in full.windows if w.kind in wanted]
    return full


def fire_window(
    engine: Engine,
    window: Window,
    as_of: datetime,
    *,
    batch: int = timers.BATCH,
    log: LogFn | None = None,
) -> int:
    """Fire one window to exhaustion, one transaction per batch of `batch` runs."""

    def progress(w: Window, n: int) -> None:
        if log is not None:
            log(f"{w.describe()}：本批 {n} 条")

    counts = timers.fire_all(
        partial(unit_of_work, engine), [window], as_of, limit=batch, progress=progress
    )
    return sum(counts.values())


def sweep(
    engine: Engine,
    job: str,
    as_of: datetime,
    *,
    batch: int = timers.BATCH,
    log: LogFn | None = None,
) -> Report:
    """Run one timer job (deadline_sweep, approval_sla_sweep or phase_schedule) at `as_of`."""
    as_of = as_utc(as_of)
    p = plan(engine, job, as_of)
    report = Report(job, as_of, warnings=list(p.warnings))
    for message in p.warnings:
        _warn(log, message)
    for window in p.windows:
        n = fire_window(engine, window, as_of, batch=batch, log=log)
        if n:
            report.counts[window.count_key()] = report.counts.get(window.count_key(), 0) + n
    if job == "deadline_sweep" and (closed := close_surveys(engine, as_of)):
        report.counts[SURVEYS_CLOSED] = closed
    if job == "deadline_sweep":
        report.counts.update(sweep_findings(engine, as_of))
        if removed := sweep_exports(engine):
            report.counts[EXPORTS_REMOVED] = removed
    return report


EXPORTS_REMOVED = "export_files_removed"


def sweep_exports(engine: Engine) -> int:
    """Delete the files of expired 台账 downloads and fail export jobs that stopped reporting
    (part of the deadline sweep; on the wall clock, whatever the sweep's `as_of`)."""
    with unit_of_work(engine) as session:
        return export_jobs.sweep(session)


SURVEYS_CLOSED = "survey_closed"


def close_surveys(engine: Engine, as_of: datetime) -> int:
    """Close the 群众评议 surveys whose stage deadline has passed (part of the deadline sweep)."""
    with unit_of_work(engine) as session:
        return close_due(session, as_utc(as_of))


def sweep_findings(engine: Engine, as_of: datetime) -> dict[str, int]:
    """Reminders and escalation of the supervision group's findings (part of the deadline sweep)."""
    with unit_of_work(engine) as session:
        return findings_sweep(session, as_utc(as_of))


def _warn(log: LogFn | None, message: str) -> None:
    logging.getLogger("workflows").warning(message)
    if log is not None:
        log("警告：" + message)


def campaign_ids(engine: Engine) -> list[int]:
    with read_session(engine) as session:
        return bulletins.active_campaign_ids(session)


def publish_bulletins(engine: Engine, campaign_id: int, as_of: datetime) -> int:
    """Store and send this week's bulletins of one campaign (once per week)."""
    with unit_of_work(engine) as session:
        return bulletins.publish(session, campaign_id, as_utc(as_of))


def weekly_bulletin(engine: Engine, as_of: datetime, *, log: LogFn | None = None) -> Report:
    as_of = as_utc(as_of)
    report = Report("weekly_bulletin", as_of)
    for cid in campaign_ids(engine):
        n = publish_bulletins(engine, cid, as_of)
        report.counts[f"campaign_{cid}"] = n
        if log is not None:
            log(f"活动 {cid}：新简报 {n} 份")
    return report


def deliver(engine: Engine, *, now: datetime | None = None, batch: int = 100) -> dict[str, Any]:
    """Drain the notification outbox through the relay; return its report as a dict."""
    from notifications import relay

    report = relay.drain(engine, batch=batch, now=now)
    return {
        "claimed": report.claimed,
        "done": report.done,
        "failed_rows": report.failed_rows,
        "sent": sum(report.sent.values()),
        "retried": sum(report.retried.values()),
        "deferred": sum(report.deferred.values()),
    }


def run_job(engine: Engine, job: str, as_of: datetime, *, log: LogFn | None = None) -> Report:
    """Run any job directly (no Prefect): what `dangjian sweep` does without a server."""
    if job == "weekly_bulletin":
        return weekly_bulletin(engine, as_of, log=log)
    if job == "deliver_notifications":
        counts = deliver(engine, now=as_utc(as_of))
        return Report(job, as_utc(as_of), counts=counts)
    if job not in JOBS:
        raise ValueError(f"未知的任务：{job}（可选：{'、'.join(JOBS)}）")
    return sweep(engine, job, as_of, log=log)

"""Background jobs: the row is the source of truth.

A job is created `queued` in the request's transaction, then run by a daemon thread of the
process that accepted it (`start`): `running`, its progress written after every chunk (each write
also touches `heartbeat_at`), then `done` with its file under the data directory and an
unguessable download address (`public_links` kind "download") valid until `expires_at`, or
`failed` with a reason in Chinese. A queued or running job whose heartbeat has been silent for
`STALE_AFTER` (its process ended: a restart, a crash) is marked failed when next read or swept.
Expired files are deleted by `sweep` (run whenever a job is created, and when an expired
address is asked for).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from states import public_links
from states.config import data_dir
from states.db import read_session, unit_of_work
from states.errors import DomainError, NotFound
from states.jobs.models import Job
from states.timeutil import utcnow
from states.users import Actor

log = logging.getLogger("states.jobs")

KEEP_FOR = timedelta(hours=24)
STALE_AFTER = timedelta(minutes=10)
INTERRUPTED = "导出中断（服务重启或中途停止），请重新导出"
EXPORTS = "exports"

#: What a job does: given a session, the file to write and a progress callback, returns the
#: file name offered for download.
Work = Callable[[Session, Path, Callable[[int, int], None]], str]


class Expired(DomainError):
    """A download address whose time has passed (HTTP 410)."""

    code = "gone"


def create(
    session: Session, *, kind: str, params: dict[str, Any], actor: Actor, org_id: int | None
) -> Job:
    """A queued job asked for by `actor`."""
    sweep(session)
    now = utcnow()
    job = Job(
        kind=kind,
        params=params,
        requested_by=actor.user_id,
        org_id=org_id,
        created_at=now,
        heartbeat_at=now,
    )
    session.add(job)
    session.flush()
    return job


def get(session: Session, job_id: int, actor: Actor) -> Job:
    """The job if `actor` asked for it; NotFound for anyone else's or a missing one."""
    mark_stale(session)
    job = session.get(Job, job_id, populate_existing=True)
    if job is None or job.requested_by != actor.user_id:
        raise NotFound("导出任务不存在", details={"job_id": job_id})
    return job


def download_token(job: Job) -> str | None:
    """The token of a finished job's download address."""
    if job.status != "done" or not job.download_nonce:
        return None
    return public_links.token_for("download", job.download_nonce)


def by_token(session: Session, token: str) -> tuple[Job, Path]:
    """The finished job a download token names and its file; Expired once it has passed."""
    nonce = public_links.nonce_of("download", token)
    job = None
    if nonce is not None:
        job = session.execute(select(Job).where(Job.download_nonce == nonce)).scalars().first()
    if job is None or job.status != "done":
        raise NotFound("下载地址无效")
    if job.expires_at is None or job.expires_at <= utcnow() or not job.file_path:
        raise Expired("下载地址已过期，请重新导出", details={"expired_at": job.expires_at})
    return job, data_dir() / job.file_path


def mark_stale(session: Session, now: datetime | None = None) -> int:
    """Mark failed the jobs whose process stopped reporting; return how many."""
    limit = (now or utcnow()) - STALE_AFTER
    result = session.execute(
        update(Job)
        .where(col(Job.status).in_(("queued", "running")))
        .where(or_(col(Job.heartbeat_at) < limit, col(Job.heartbeat_at).is_(None)))
        .values(status="failed", error=INTERRUPTED, finished_at=now or utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)


def sweep(session: Session, now: datetime | None = None) -> int:
    """Delete the files of expired downloads and mark stale jobs failed; return files deleted."""
    now = now or utcnow()
    mark_stale(session, now)
    stmt = select(Job).where(col(Job.expires_at) < now, col(Job.file_path).is_not(None))
    jobs = list(session.execute(stmt.limit(500)).scalars())
    for job in jobs:
        _forget_file(session, job)
    return len(jobs)


def _forget_file(session: Session, job: Job) -> None:
    if job.file_path:
        (data_dir() / job.file_path).unlink(missing_ok=True)
        job.file_path = None
        session.add(job)
        session.flush()


def export_path(job_id: int) -> tuple[Path, str]:
    """Where a job's file goes: the absolute path and the one relative to the data directory."""
    relative = f"{EXPORTS}/job-{job_id}-{public_links.new_nonce()}.xlsx"
    path = data_dir() / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    return path, relative


def start(engine: Engine, job_id: int, work: Work) -> threading.Thread:
    """Run the job in a daemon thread of this process."""
    thread = threading.Thread(target=run, args=(engine, job_id, work), daemon=True)
    thread.name = f"job-{job_id}"
    thread.start()
    return thread


def _set(engine: Engine, job_id: int, **values: Any) -> None:
    with unit_of_work(engine) as s:
        s.execute(update(Job).where(col(Job.id) == job_id).values(heartbeat_at=utcnow(), **values))


def run(engine: Engine, job_id: int, work: Work) -> None:
    """Run `work` for the job, recording progress and the outcome on its row."""
    path, relative = export_path(job_id)
    _set(engine, job_id, status="running", started_at=utcnow())
    try:
        with read_session(engine) as s:  # on SQLite: no write lock while progress is written
            name = work(s, path, lambda done, total: _set(engine, job_id, done=done, total=total))
    except Exception as exc:  # the reason is recorded on the row, never lost
        path.unlink(missing_ok=True)
        reason = exc.message if isinstance(exc, DomainError) else "内部错误"
        log.exception("job %s failed", job_id)
        _set(
            engine, job_id, status="failed", error=f"导出失败：{reason}"[:500], finished_at=utcnow()
        )
        return
    now = utcnow()
    _set(
        engine,
        job_id,
        status="done",
        file_path=relative,
        file_name=name[:200],
        download_nonce=public_links.new_nonce(),
        expires_at=now + KEEP_FOR,
        finished_at=now,
    )

"""Background jobs: progress of a long export and its expiring download address."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import IdPath, engine_of
from api.errors import responses
from api.security import authenticated
from states.db import unit_of_work
from states.jobs import service
from states.jobs.models import Job
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["导出任务"])

STATUS_TEXT = {"queued": "排队中", "running": "正在导出", "done": "已完成", "failed": "失败"}
#: The public address a finished job's file is downloaded from (no login; it expires).
DOWNLOAD_PATH = "/d/{token}"


class JobOut(S.Out):
    id: int
    kind: str
    status: Literal["queued", "running", "done", "failed"]
    status_text: str = Field(description="状态（中文）")
    done: int = Field(description="已处理条数")
    total: int = Field(description="总条数")
    error: str | None = Field(description="失败原因")
    file_name: str | None
    download_url: str | None = Field(description="下载地址（完成后给出，到期后返回 410）")
    created_at: S.LocalTime
    finished_at: S.LocalTime | None
    expires_at: S.LocalTime | None = Field(description="下载地址失效时间")
    url: str = Field(description="本任务的查询地址")


def download_url(request: Request, job: Job) -> str | None:
    """The absolute download address of a finished job."""
    token = service.download_token(job)
    if token is None:
        return None
    return str(request.base_url).rstrip("/") + DOWNLOAD_PATH.format(token=token)


def job_out(request: Request, job: Job) -> JobOut:
    return JobOut(
        id=job.id or 0,
        kind=job.kind,
        status=job.status,
        status_text=STATUS_TEXT.get(job.status, job.status),
        done=job.done,
        total=job.total,
        error=job.error,
        file_name=job.file_name,
        download_url=download_url(request, job),
        created_at=job.created_at,
        finished_at=job.finished_at,
        expires_at=job.expires_at,
        url=f"/api/v1/jobs/{job.id}",
    )


def read_job(s: Session, job_id: int, actor: Actor) -> Job:
    """The caller's own job (a stale one marked failed first); others' are NotFound."""
    return service.get(s, job_id, actor)


@router.get(
    "/jobs/{job_id}",
    summary="导出任务进度与下载地址",
    response_model=JobOut,
    responses=responses(401, 404, 422),
)
def get_job(job_id: IdPath, request: Request, actor: Actor = Depends(authenticated)) -> JobOut:
    """只有发起人能查看；完成后给出 download_url（无需登录，24 小时内有效，过期返回 410）。"""
    with unit_of_work(engine_of(request)) as s:
        return job_out(request, read_job(s, job_id, actor))

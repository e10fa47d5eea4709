"""台账 exports: a run's workbook at once, a committee's in the background."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from pydantic import Field, StrictBool
from sqlmodel import Session
from starlette.background import BackgroundTask

from api import schemas as S
from api.deps import MAX_ID, Idem, IdPath, engine_of, idempotency_key, write
from api.errors import responses
from api.security import authenticated
from api.v1.jobs import JobOut, job_out
from states.db import read_session
from states.jobs import service
from states.ledger import exports, run_book
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["台账导出"])
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class LedgerIn(S.In):
    org_id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="导出哪个组织及其下级（默认：活动在您范围内的根）",
    )
    per_branch: StrictBool = Field(
        default=False, description="每个支部另加一张工作表（最多 500 个）"
    )


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def run_workbook(request: Request, run_id: int, actor: Actor | None) -> FileResponse:
    """Write the run's workbook to a temporary file and send it (the file goes afterwards)."""
    with read_session(engine_of(request)) as s:
        data = run_book.load(s, run_id, actor)
        name = run_book.file_name(data)
        out = Path(tempfile.mkstemp(prefix="ledger-", suffix=".xlsx")[1])
        try:
            run_book.write(data, out, base_url=base_url(request))
        except BaseException:
            out.unlink(missing_ok=True)
            raise
    return FileResponse(
        out,
        media_type=XLSX,
        filename=name,
        background=BackgroundTask(out.unlink, missing_ok=True),
    )


@router.get(
    "/runs/{run_id}/ledger.xlsx",
    summary="导出支部台账（Excel）",
    response_class=FileResponse,
    responses={**responses(401, 404, 422), 200: {"content": {XLSX: {}}}},
)
def run_ledger(
    run_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> FileResponse:
    """封面（组织、活动、各阶段进入与通过时间及审批意见、审计链末条哈希）、每阶段材料、党员出勤、承诺与历史。"""
    return run_workbook(request, run_id, actor)


def start_committee_job(
    request: Request, campaign_id: int, body: LedgerIn, actor: Actor, idem: Idem | None
) -> Response:
    """Create the job (checked for reach and size) and start it unless this is a replay."""
    work: list[tuple[int, service.Work]] = []  # the last attempt's, if the write is retried

    def change(s: Session, actor: Actor) -> JobOut:
        scope = exports.scope_for(s, campaign_id, body.org_id, actor)
        total = exports.check_size(s, scope, body.per_branch)
        params = {"campaign_id": campaign_id, "org_id": scope.org.id, "per_branch": body.per_branch}
        job = service.create(s, kind="ledger", params=params, actor=actor, org_id=scope.org.id)
        job.total = total
        task = exports.committee_work(
            campaign_id, scope.org.id or 0, per_branch=body.per_branch, base_url=base_url(request)
        )
        work.append((job.id or 0, task))
        return job_out(request, job)

    resp = write(request, actor, idem, 202, change)
    if work and "Idempotent-Replayed" not in resp.headers:
        job_id, task = work[-1]
        service.start(engine_of(request), job_id, task)
    return resp


@router.post(
    "/campaigns/{campaign_id}/ledger",
    summary="导出活动台账汇总（后台任务）",
    status_code=202,
    response_model=JobOut,
    responses=responses(401, 404, 422),
)
def campaign_ledger(
    campaign_id: IdPath,
    body: LedgerIn,
    request: Request,
    actor: Actor = Depends(authenticated),
    idem: Idem | None = Depends(idempotency_key),
) -> Response:
    """汇总表每个支部一行（阶段、截止日期、逾期天数、督办级别、等次）；在后台生成，用 GET /api/v1/jobs/{id} 查看进度与下载地址。"""
    return start_committee_job(request, campaign_id, body, actor, idem)

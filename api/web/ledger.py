"""台账 pages: a run's workbook (/runs/{id}/ledger.xlsx), a committee's export in the background
(POST /campaigns/{id}/ledger → /jobs/{id}, a page that refreshes itself until the file is ready),
and the expiring download address /d/{token} (no login: the token is the capability).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response

from api.deps import MAX_ID, IdPath, engine_of
from api.v1.jobs import STATUS_TEXT, download_url
from api.v1.ledger import XLSX, base_url, run_workbook
from api.web import session as web
from states.db import read_session, unit_of_work
from states.errors import InvalidInput, NotFound
from states.jobs import service
from states.jobs.service import Expired
from states.ledger import exports
from states.users import Actor

router = APIRouter(include_in_schema=False)
ActorDep = Annotated[Actor, Depends(web.page_actor)]
FormDep = Annotated[dict[str, str], Depends(web.form_fields)]


@router.get("/runs/{run_id}/ledger.xlsx")
def run_ledger_page(run_id: IdPath, request: Request, actor: ActorDep) -> Response:
    """The run's 台账 workbook (the run's reach; out of reach: the 404 page)."""
    try:
        return run_workbook(request, run_id, actor)
    except NotFound:
        return web.not_found(request)


def _org_id(form: dict[str, str]) -> int | None:
    text = form.get("org_id", "").strip()
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= MAX_ID:
        raise InvalidInput("组织编号有误", details={"field": "org_id"})
    return int(text)


@router.post("/campaigns/{campaign_id}/ledger", dependencies=[Depends(web.csrf_protect)])
def campaign_ledger_page(
    campaign_id: IdPath, request: Request, actor: ActorDep, form: FormDep
) -> Response:
    """Start the committee's export and show its progress page."""
    per_branch = form.get("per_branch") in ("1", "on", "true")
    back = f"/campaigns/{campaign_id}"
    try:
        with unit_of_work(engine_of(request)) as s:
            scope = exports.scope_for(s, campaign_id, _org_id(form), actor)
            total = exports.check_size(s, scope, per_branch)
            params = {"campaign_id": campaign_id, "org_id": scope.org.id, "per_branch": per_branch}
            job = service.create(s, kind="ledger", params=params, actor=actor, org_id=scope.org.id)
            job.total = total
            s.flush()
            job_id = job.id or 0
    except NotFound:
        return web.not_found(request)
    except InvalidInput as exc:
        web.flash(request, exc.message, "error")
        return web.redirect(back)
    work = exports.committee_work(
        campaign_id, scope.org.id or 0, per_branch=per_branch, base_url=base_url(request)
    )
    service.start(engine_of(request), job_id, work)
    return web.redirect(f"/jobs/{job_id}?back={back}")


@router.get("/jobs/{job_id}")
def job_page(job_id: IdPath, request: Request, actor: ActorDep, back: str = "") -> Response:
    """A job's progress (refreshing itself while it runs), then its download link or reason."""
    try:
        with unit_of_work(engine_of(request)) as s:
            job = service.get(s, job_id, actor)
    except NotFound:
        return web.not_found(request)
    percent = int(100 * job.done / job.total) if job.total else 0
    context = {
        "job": job,
        "status_text": STATUS_TEXT.get(job.status, job.status),
        "percent": percent,
        "download_url": download_url(request, job),
        "back": web.safe_next(back, "") if back else "",
    }
    return web.render(request, "job.html", context)


@router.get("/d/{token}", dependencies=[Depends(web.optional_actor)])
def download(token: str, request: Request) -> Response:
    """A finished export's file; the 404 page for a forged token, 410 once it has expired."""
    try:
        with read_session(engine_of(request)) as s:
            job, path = service.by_token(s, token)
            name = job.file_name or "台账.xlsx"
    except NotFound:
        return web.not_found(request)
    except Expired:
        with unit_of_work(engine_of(request)) as s:
            service.sweep(s)
        return web.error_page(request, 410, "下载地址已过期", "下载地址已过期，请重新导出台账。")
    if not path.is_file():
        return web.not_found(request)
    return FileResponse(path, media_type=XLSX, filename=name)

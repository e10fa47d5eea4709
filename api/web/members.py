"""The roster page (党员名册) of an organisation: members with masked phones, counts by status,
and the roster import form, with every bad row listed like the organisation import page.

Reach, masking and the right to import are `states.members.service`'s, as in the JSON API
(`api/v1/members.py`). The import runs in this sync route's worker thread, holding one of the
process's import slots, within the `states.sheets` limits.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from starlette.datastructures import FormData, UploadFile

from api.deps import IdPath, engine_of
from api.v1.members import copy_upload
from api.v1.orgs import BUSY_MESSAGE, ImportBusy, import_slot, unsupported
from api.web.session import csrf_protect, flash, form_data, page_actor, redirect, render
from states.db import read_session, unit_of_work
from states.errors import Forbidden, InvalidInput, NotFound
from states.members.importer import import_members
from states.members.models import STATUSES
from states.members.queries import RosterFilter, groups_of, roster_page, status_counts
from states.members.rows import HEADERS, RowError
from states.members.service import import_scope, may_import, sees_phone, shown_phone
from states.models import Organisation
from states.sheets import SheetLimits, TooLarge
from states.users import Actor

router = APIRouter(include_in_schema=False)
PAGE = 100


def _visible(request: Request, actor: Actor, org_id: int) -> Organisation:
    with read_session(engine_of(request)) as s:
        org = s.get(Organisation, org_id)
        if org is None or not actor.reaches(org.path):
            raise NotFound("组织不存在")
        s.expunge(org)
        return org


def _page(
    request: Request,
    actor: Actor,
    org: Organisation,
    *,
    status: str | None = None,
    offset: int = 0,
    code: int = 200,
    **context: Any,
) -> HTMLResponse:
    with read_session(engine_of(request)) as s:
        items, total = roster_page(s, org, RosterFilter(status), limit=PAGE, offset=offset)
        counts = status_counts(s, org.id or 0)
        groups = {g.id: g.name for g in groups_of(s, org)}
        full = sees_phone(actor, org.id or 0, org.path)
        rows = [(m, shown_phone(m.phone, full), groups.get(m.group_org_id)) for m in items]
        context = {
            "org": org,
            "rows": rows,
            "total": total,
            "counts": counts,
            "statuses": STATUSES,
            "status": status,
            "offset": offset,
            "page": PAGE,
            "masked": not full,
            "may_import": may_import(actor, org),
            "headers": list(HEADERS.values()),
            "limits": SheetLimits.from_env(),
            **context,
        }
        return render(request, "members.html", context, code)


@router.get("/orgs/{org_id:int}/members", response_class=HTMLResponse)
def roster(
    request: Request,
    org_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
    status: Annotated[str | None, Query(max_length=8)] = None,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """The roster: counts by status, one page of members, the import form for those allowed."""
    org = _visible(request, actor, org_id)
    return _page(request, actor, org, status=status if status in STATUSES else None, offset=offset)


@router.post(
    "/orgs/{org_id:int}/members/import",
    response_class=HTMLResponse,
    dependencies=[Depends(csrf_protect)],
)
def import_upload(
    request: Request,
    org_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
    data: Annotated[FormData, Depends(form_data)],
) -> Response:
    """Import a roster file into this organisation's branches; all or nothing."""
    org = _visible(request, actor, org_id)
    if not may_import(actor, org):
        raise Forbidden("只有组织员、管理员或本支部书记可以导入党员名册")
    upload = data.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _page(request, actor, org, code=422, file_error="请选择文件")
    suffix = Path(upload.filename).suffix.lower()
    message = unsupported(suffix)
    if message is not None:
        return _page(request, actor, org, code=422, file_error=message)
    try:
        with import_slot(), tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"roster{suffix}"
            copy_upload(upload.file, path, SheetLimits.from_env().max_bytes + 1)
            return _run(request, actor, org, path, upload.filename)
    except TooLarge as exc:
        return _page(request, actor, org, code=413, file_error=exc.message)
    except ImportBusy:
        return _page(request, actor, org, code=503, file_error=BUSY_MESSAGE)


def _run(request: Request, actor: Actor, org: Organisation, path: Path, name: str) -> Response:
    try:
        with unit_of_work(engine_of(request)) as s:
            result = import_members(s, path, scope=import_scope(actor, org), actor_id=actor.user_id)
    except TooLarge:
        raise
    except InvalidInput as exc:
        errors = _row_errors(exc)
        if not errors:
            return _page(request, actor, org, code=422, file_error=exc.message)
        return _page(request, actor, org, code=422, errors=errors, filename=name)
    flash(
        request,
        f"名册导入完成：新增 {result.created} 名、更新 {result.updated} 名、"
        f"未变 {result.unchanged} 名党员",
    )
    return redirect(f"/orgs/{org.id}/members")


def _row_errors(exc: InvalidInput) -> list[RowError]:
    details = exc.details if isinstance(exc.details, list) else []
    return [
        RowError(int(d.get("row", 0)), str(d.get("column", "")), str(d.get("message", "")))
        for d in details
        if isinstance(d, dict) and "row" in d
    ]

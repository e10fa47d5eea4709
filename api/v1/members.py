"""The roster (党员名册) of a branch: list it within reach (phones masked per the rule in
`states.members.service`), import it from CSV/XLSX.

The import reads and writes in a worker thread, holding one of the process's import slots (the
organisation import's, `api.v1.orgs.import_slot`), within `states.sheets` limits: 413 for sizes,
422 naming each bad row and column, 503 when every slot stays busy. Nothing is written unless
every row is good.
"""

from __future__ import annotations

import tempfile
from datetime import date
from pathlib import Path
from typing import BinaryIO

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, Page, engine_of, idempotency_key, page, reader, write
from api.errors import ErrorOut, error_body, responses
from api.security import authenticated, roles
from api.v1.orgs import BUSY_MESSAGE, ImportBusy, import_slot, unsupported, visible_org
from states.db import read_session
from states.errors import Forbidden, InvalidInput
from states.members.importer import import_members
from states.members.models import STATUSES, Member
from states.members.queries import RosterFilter, roster_page
from states.members.service import import_scope, may_import, sees_phone, shown_phone
from states.models import Organisation, Role
from states.sheets import SheetLimits
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["党员名册"])
FILE_HELP = "CSV 或 XLSX：姓名、支部编码、党小组编码、类别、入党日期、党员编号、手机号（可加 状态、状态日期）"


class MemberOut(S.Out):
    id: int
    org_id: int
    group_org_id: int | None
    name: str
    category: str
    joined_on: date
    member_no: str | None
    phone: str | None = Field(
        description="手机号；本支部书记及本级、上级委员、组织员、管理员可见全号，其他人为 138****1234"
    )
    phone_masked: bool
    status: str
    status_on: date | None


def member_out(m: Member, full_phone: bool) -> MemberOut:
    return MemberOut(
        id=m.id or 0,
        org_id=m.org_id,
        group_org_id=m.group_org_id,
        name=m.name,
        category=m.category,
        joined_on=m.joined_on,
        member_no=m.member_no,
        phone=shown_phone(m.phone, full_phone),
        phone_masked=bool(m.phone) and not full_phone,
        status=m.status,
        status_on=m.status_on,
    )


@router.get(
    "/orgs/{org_id}/members",
    summary="党员名册",
    response_model=S.Page[MemberOut],
    responses=responses(401, 404, 422),
)
def list_members(
    org_id: IdPath,
    status: str | None = Query(None, description="只看此状态：" + "、".join(STATUSES)),
    group_id: int | None = Query(None, ge=1, le=2_147_483_647, description="只看此党小组"),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[MemberOut]:
    """返回本支部名册（按姓名排序，分页；可按状态、党小组筛选）。手机号对本支部书记及本级和上级的委员、
    组织员、管理员显示全号，对其他可见者显示为 138****1234。不在管辖范围内的组织返回 404。"""
    org = visible_org(s, org_id, actor)
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"未知的状态：{status}（可选：{'、'.join(STATUSES)}）", details=[{"field": "status"}]
        )
    items, total = roster_page(
        s, org, RosterFilter(status, group_id), limit=p.limit, offset=p.offset
    )
    full = sees_phone(actor, org.id or 0, org.path)
    return S.Page(
        items=[member_out(m, full) for m in items], total=total, limit=p.limit, offset=p.offset
    )


@router.post(
    "/orgs/{org_id}/members/import",
    summary="导入党员名册（CSV/XLSX）",
    response_model=S.ImportOut,
    responses={
        **responses(401, 403, 404, 413, 422),
        503: {"model": ErrorOut, "description": "同时进行的导入过多，请稍后重试"},
    },
)
async def import_roster(
    request: Request,
    org_id: IdPath,
    file: UploadFile | None = File(None, description=FILE_HELP),
    actor: Actor = Depends(roles(Role.ORGANISER, Role.ADMIN, Role.SECRETARY)),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """按党员编号（无编号时按支部、姓名、入党日期）幂等地导入名册到本组织及其下级支部。组织员、管理员可导入
    管辖范围内的支部；支部书记只能导入本支部。任何一行有错则整批不写入，返回每处错误的行号与列名
    （支部或党小组编码不存在、党小组不属于该支部、文件内重复、日期无效或晚于今天、类别或手机号无效、
    支部不在管辖范围内、含身份证号）。上限与组织导入相同：文件 10 MB、200,000 行，超出大小返回 413。"""
    try:
        return await run_in_thread(request, actor, idem, org_id, file)
    except ImportBusy:
        body = error_body("busy", BUSY_MESSAGE)
        return JSONResponse(body, status_code=503, headers={"Retry-After": "10"})


async def run_in_thread(
    request: Request, actor: Actor, idem: Idem | None, org_id: int, file: UploadFile | None
) -> Response:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(_import, request, actor, idem, org_id, file)


def _import(
    request: Request, actor: Actor, idem: Idem | None, org_id: int, file: UploadFile | None
) -> Response:
    """Check reach and right, then read and import in this worker thread, holding a slot."""
    with read_session(engine_of(request)) as s:
        org = visible_org(s, org_id, actor)
        s.expunge(org)
    if not may_import(actor, org):
        raise Forbidden("只有组织员、管理员或本支部书记可以导入党员名册")
    if file is None or not file.filename:
        raise InvalidInput("请上传名册文件", details=[{"field": "file"}])
    suffix = Path(file.filename).suffix.lower()
    message = unsupported(suffix)
    if message is not None:
        raise InvalidInput(message, details=[{"field": "file"}])
    with import_slot(), tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"roster{suffix}"
        copy_upload(file.file, path, SheetLimits.from_env().max_bytes + 1)
        return write(request, actor, idem, 200, lambda s, me: _run(s, path, me, org))


def _run(s: Session, path: Path, actor: Actor, org: Organisation) -> S.ImportOut:
    result = import_members(s, path, scope=import_scope(actor, org), actor_id=actor.user_id)
    return S.ImportOut(created=result.created, updated=result.updated, unchanged=result.unchanged)


def copy_upload(source: BinaryIO, path: Path, budget: int) -> None:
    """Copy at most `budget` bytes of an upload to `path` (one over the limit is enough to
    refuse it)."""
    source.seek(0)
    with path.open("wb") as out:
        while budget > 0 and (chunk := source.read(min(budget, 1024 * 1024))):
            out.write(chunk)
            budget -= len(chunk)

"""The organisation tree: read within reach, import (organisers and admins).

Imports never parse on the event loop: the upload is copied and read in a worker thread, within
`states.sheets` limits (413 for sizes, 422 for rows, columns and cells), and at most
`IMPORT_SLOTS` imports run at once per process; the next waits `SLOT_WAIT` s, then gets 503.
The web page (`api/web/orgs.py`) imports through `read_upload` and `import_slot` too.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from sqlalchemy import and_
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

from api import schemas as S
from api.deps import Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import ErrorOut, error_body, responses
from api.security import authenticated, roles
from api.v1.convert import org_out
from states.errors import InvalidInput, NotFound
from states.importer import ParsedRows, import_orgs, parse_file, scope_errors
from states.members.queries import member_count, member_counts
from states.models import ORG_KINDS, Organisation, Role
from states.orgs import subtree_filter
from states.queries import org_page
from states.sheets import SheetLimits
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["组织"])
SUFFIXES = (".csv", ".xlsx", ".xlsm")
IMPORT_SLOTS = 2
SLOT_WAIT = 5.0
BUSY_MESSAGE = "当前正在处理的导入较多，请稍后重试"
_slots = threading.BoundedSemaphore(IMPORT_SLOTS)


class ImportBusy(Exception):
    """Every import slot of this process stayed taken for `SLOT_WAIT` seconds."""


@contextmanager
def import_slot() -> Iterator[None]:
    """Hold one of the process's import slots (blocking; call it in a worker thread)."""
    if not _slots.acquire(timeout=SLOT_WAIT):
        raise ImportBusy
    try:
        yield
    finally:
        _slots.release()


def read_upload(source: BinaryIO, suffix: str) -> ParsedRows:
    """Copy an upload (at most one byte over the limit) to a temporary file and parse it."""
    limits = SheetLimits.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        source.seek(0)
        with path.open("wb") as out:
            _copy(source, out, limits.max_bytes + 1)
        return parse_file(path, limits)


def _copy(source: BinaryIO, out: BinaryIO, budget: int) -> None:
    while budget > 0 and (chunk := source.read(min(budget, 1024 * 1024))):
        out.write(chunk)
        budget -= len(chunk)


def unsupported(suffix: str) -> str | None:
    """Return the message for a file type imports do not read (None when it is read)."""
    if suffix in SUFFIXES:
        return None
    return f"不支持的文件类型：{suffix or '（无扩展名）'}，请上传 CSV 或 XLSX 文件"


KindQuery = Query(None, description="只看此类型：" + "、".join(ORG_KINDS))


def visible_org(s: Session, org_id: int, actor: Actor) -> Organisation:
    org = s.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    return org


@router.get(
    "/orgs/{org_id:int}",  # an integer, so that POST /orgs/import is never read as an id
    summary="查看组织",
    response_model=S.OrgOut,
    responses=responses(401, 404, 422),
)
def get_org(
    org_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> S.OrgOut:
    """返回一个组织的资料。不在管辖范围内的组织与不存在的一样，返回 404。"""
    org = visible_org(s, org_id, actor)
    return org_out(org, member_count(s, org))


@router.get(
    "/orgs/{org_id}/children",
    summary="下一级组织",
    response_model=S.Page[S.OrgOut],
    responses=responses(401, 404, 422),
)
def get_children(
    org_id: IdPath,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[S.OrgOut]:
    """返回直接下级组织，按路径排序，分页。"""
    org = visible_org(s, org_id, actor)
    items, total = org_page(
        s,
        and_(col(Organisation.parent_id) == org.id, actor.reach_filter()),
        limit=p.limit,
        offset=p.offset,
    )
    return _page(s, items, total, p)


@router.get(
    "/orgs/{org_id}/subtree",
    summary="全部下级组织",
    response_model=S.Page[S.OrgOut],
    responses=responses(401, 404, 422),
)
def get_subtree(
    org_id: IdPath,
    kind: str | None = KindQuery,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[S.OrgOut]:
    """返回该组织及其全部下级（可按类型筛选），按路径排序，分页。"""
    org = visible_org(s, org_id, actor)
    if kind is not None and kind not in ORG_KINDS:
        raise InvalidInput(
            f"未知的组织类型：{kind}（可选：{'、'.join(ORG_KINDS)}）", details=[{"field": "kind"}]
        )
    items, total = org_page(
        s,
        and_(subtree_filter(org.path), actor.reach_filter()),
        kind=kind,
        limit=p.limit,
        offset=p.offset,
    )
    return _page(s, items, total, p)


def _page(s: Session, items: list[Organisation], total: int, p: Page) -> S.Page[S.OrgOut]:
    """A page of organisations, each with its member count (from its roster when it has one)."""
    counts = member_counts(s, items)
    out = [org_out(o, counts.get(o.id or 0)) for o in items]
    return S.Page(items=out, total=total, limit=p.limit, offset=p.offset)


@router.post(
    "/orgs/import",
    summary="导入组织树（CSV/XLSX）",
    response_model=S.ImportOut,
    responses={
        **responses(401, 403, 409, 413, 422),
        503: {"model": ErrorOut, "description": "同时进行的导入过多，请稍后重试"},
    },
)
async def import_file(
    request: Request,
    file: UploadFile = File(
        description="CSV 或 XLSX：编码、名称、类型、上级编码、党员人数、书记、联系方式"
    ),
    actor: Actor = Depends(roles(Role.ORGANISER, Role.ADMIN)),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """按编码幂等地导入组织；只能导入到本人管辖的组织之下。任何一行有错则整批不写入，返回每处错误的行号与列名。

    上限：文件 10 MB；XLSX 解压后单个部件 100 MB、合计 200 MB；数据 200,000 行、256 列、
    每格 1,000 字。超出大小上限返回 413，行数、列数或单元格超限返回 422（指明行与列）。
    编码不区分大小写：与已有组织仅大小写不同的编码即是该组织。"""
    suffix = Path(file.filename or "").suffix.lower()
    message = unsupported(suffix)
    if message is not None:
        raise InvalidInput(message, details=[{"field": "file"}])
    try:
        return await run_in_threadpool(_import, request, actor, idem, file.file, suffix)
    except ImportBusy:
        body = error_body("busy", BUSY_MESSAGE)
        return JSONResponse(body, status_code=503, headers={"Retry-After": "10"})


def _import(
    request: Request, actor: Actor, idem: Idem | None, source: BinaryIO, suffix: str
) -> Response:
    """Read and import in one worker thread, holding an import slot throughout."""
    with import_slot():
        rows = read_upload(source, suffix)

        def change(s: Session, actor: Actor) -> S.ImportOut:
            errors = scope_errors(s, rows, actor.reaches)
            if errors:
                raise InvalidInput(
                    f"导入失败：共 {len(errors)} 处超出管辖范围，未写入任何数据",
                    details=[e.__dict__ for e in errors],
                )
            result = import_orgs(s, rows, actor_id=actor.user_id)
            return S.ImportOut(
                created=result.created, updated=result.updated, unchanged=result.unchanged
            )

        return write(request, actor, idem, 200, change)

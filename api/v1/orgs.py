"""The organisation tree: read within reach, import (organisers and admins)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from sqlalchemy import and_
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

from api import schemas as S
from api.deps import Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import authenticated, roles
from api.v1.convert import org_out
from states.errors import InvalidInput, NotFound
from states.importer import import_orgs, parse_file, scope_errors
from states.models import ORG_KINDS, Organisation, Role
from states.orgs import subtree_filter
from states.queries import org_page
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["组织"])
MAX_IMPORT_BYTES = 10 * 1024 * 1024
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
    return org_out(visible_org(s, org_id, actor))


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
    return S.Page(items=[org_out(o) for o in items], total=total, limit=p.limit, offset=p.offset)


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
    return S.Page(items=[org_out(o) for o in items], total=total, limit=p.limit, offset=p.offset)


@router.post(
    "/orgs/import",
    summary="导入组织树（CSV/XLSX）",
    response_model=S.ImportOut,
    responses=responses(401, 403, 409, 413, 422),
)
async def import_file(
    request: Request,
    file: UploadFile = File(
        description="CSV 或 XLSX：编码、名称、类型、上级编码、党员人数、书记、联系方式"
    ),
    actor: Actor = Depends(roles(Role.ORGANISER, Role.ADMIN)),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """按编码幂等地导入组织；只能导入到本人管辖的组织之下。任何一行有错则整批不写入，返回每处错误的行号与列名。"""
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(413)
    suffix = Path(file.filename or "").suffix.lower()
    if suffix not in (".csv", ".xlsx", ".xlsm"):
        raise InvalidInput(
            f"不支持的文件类型：{suffix or '（无扩展名）'}，请上传 CSV 或 XLSX 文件",
            details=[{"field": "file"}],
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        path.write_bytes(data)
        rows = parse_file(path)

    def change(s: Session) -> S.ImportOut:
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

    return await run_in_threadpool(write, request, actor, idem, 200, change)

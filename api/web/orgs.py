"""Organisation pages: browse the tree, import CSV/XLSX, manage users and grants.

Reach is the API's: an organisation out of reach is a 404 page. Imports follow
`POST /api/v1/orgs/import` (organisers and admins, only under organisations in reach, nothing
written if any row is bad). Users and grants are managed by admins and organisers on the
organisation or above it; organisers cannot grant or revoke the admin role.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import and_
from sqlmodel import Session, col, select
from starlette.datastructures import FormData, UploadFile

from api.deps import IdPath, engine_of
from api.v1.orgs import BUSY_MESSAGE, ImportBusy, import_slot, read_upload, unsupported
from api.web.session import csrf_protect, flash, form_data, page_actor, redirect, render
from states.campaigns import LAUNCH_ROLES
from states.db import read_session, unit_of_work
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.importer import HEADERS, ParsedRows, RowError, scope_errors, validate
from states.importer import import_orgs as run_import
from states.members.queries import subtree_member_counts
from states.models import ROLE_LABELS, SUBTREE_ROLES, Grant, Organisation, Role, User
from states.orgs import ancestors, is_within, secretaries
from states.queries import org_page
from states.sheets import SheetLimits, TooLarge
from states.users import (
    MANAGE_ROLES,
    Actor,
    add_user,
    get_user_by_username,
    grant_role,
    grants_in_subtree,
    manageable_roles,
    revoke_grant,
)

router = APIRouter(include_in_schema=False)
CHILD_PAGE = 100
GRANT_PAGE = 100
SAMPLE_CSV = (
    "编码,名称,类型,上级编码,党员人数,书记,联系方式\n"
    "{code}-X1,示例党总支,党总支,{code},,,\n"
    "{code}-X1-S1,示例第一党支部,党支部,{code}-X1,12,支部书记甲,0000-0000000\n"
)


def _visible(s: Session, actor: Actor, org_id: int) -> Organisation:
    org = s.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在")
    return org


def reach_roots(s: Session, actor: Actor) -> list[Organisation]:
    """Return the top organisations of the actor's reach (a grant not inside another one)."""
    ids = sorted({g.org_id for g in actor.grants})
    if not ids:
        return []
    orgs = s.execute(
        select(Organisation).where(col(Organisation.id).in_(ids)).order_by(col(Organisation.path))
    ).scalars()
    subtree_paths = [g.org_path for g in actor.grants if g.role in SUBTREE_ROLES]
    return [o for o in orgs if not any(p != o.path and is_within(o.path, p) for p in subtree_paths)]


def _may_import(actor: Actor) -> bool:
    return any(actor.has_role(r) for r in MANAGE_ROLES)


@router.get("/orgs", response_class=HTMLResponse)
def orgs_home(request: Request, actor: Annotated[Actor, Depends(page_actor)]) -> HTMLResponse:
    """The organisations at the top of my reach."""
    with read_session(engine_of(request)) as s:
        roots = reach_roots(s, actor)
        ids = [o.id for o in roots if o.id is not None]
        return render(
            request,
            "orgs.html",
            {
                "roots": roots,
                "counts": subtree_member_counts(s, roots),
                "secretaries": secretaries(s, ids),
                "may_import": _may_import(actor),
            },
        )


@dataclass
class GrantForm:
    """The fields of the grant and new-user forms, with errors by field."""

    username: str = ""
    display_name: str = ""
    email: str = ""
    role: str = ""
    errors: dict[str, str] = field(default_factory=dict)


def _org_page(
    request: Request,
    s: Session,
    actor: Actor,
    org: Organisation,
    *,
    offset: int = 0,
    grant_form: GrantForm | None = None,
    user_form: GrantForm | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    children, total = org_page(
        s,
        and_(col(Organisation.parent_id) == org.id, actor.reach_filter()),
        limit=CHILD_PAGE,
        offset=offset,
    )
    crumbs = [a for a in reversed(ancestors(s, org)) if actor.reaches(a.path)]
    roles = manageable_roles(actor, org)
    grants: list[Any] = []
    grant_total = 0
    if roles:
        grants, grant_total = grants_in_subtree(s, org, limit=GRANT_PAGE)
    revocable = {
        row.grant.id
        for row in grants
        if row.user.id != actor.user_id and Role(row.grant.role) in manageable_roles(actor, row.org)
    }
    return render(
        request,
        "org.html",
        {
            "org": org,
            "crumbs": crumbs,
            "children": children,
            "child_total": total,
            "member_count": subtree_member_counts(s, [org]).get(org.id or 0, 0),
            "child_counts": subtree_member_counts(s, children),
            "secretaries": secretaries(s, [o.id for o in [org, *children] if o.id is not None]),
            "offset": offset,
            "page": CHILD_PAGE,
            "roles": roles,
            "role_labels": {r.value: label for r, label in ROLE_LABELS.items()},
            "grants": grants,
            "grant_total": grant_total,
            "revocable": revocable,
            "grant_form": grant_form or GrantForm(),
            "user_form": user_form or GrantForm(),
            "may_import": bool(roles),
            "may_launch": actor.holds_here_or_above(org.id or 0, org.path, LAUNCH_ROLES),
        },
        status_code=status_code,
    )


@router.get("/orgs/{org_id:int}", response_class=HTMLResponse)
def org_detail(
    request: Request,
    org_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> HTMLResponse:
    """One organisation: details, children, breadcrumbs; users and grants for managers."""
    with read_session(engine_of(request)) as s:
        org = _visible(s, actor, org_id)
        return _org_page(request, s, actor, org, offset=offset)


def _role_of(form: GrantForm, roles: list[Role]) -> Role | None:
    try:
        role = Role(form.role)
    except ValueError:
        form.errors["role"] = "请选择角色"
        return None
    if role not in roles:
        form.errors["role"] = f"您不能授予“{ROLE_LABELS[role]}”角色"
        return None
    return role


def _field_of(exc: InvalidInput | Conflict, default: str) -> str:
    details = exc.details
    if isinstance(details, dict) and isinstance(details.get("field"), str):
        return str(details["field"])
    return default


@router.post("/orgs/{org_id:int}/grants", dependencies=[Depends(csrf_protect)])
def add_grant(
    request: Request,
    org_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
    data: Annotated[FormData, Depends(form_data)],
) -> Response:
    """Grant a role on this organisation to an existing user."""
    form = GrantForm(
        username=str(data.get("username") or "").strip(), role=str(data.get("role") or "")
    )
    engine = engine_of(request)
    with unit_of_work(engine) as s:
        org = _visible(s, actor, org_id)
        roles = manageable_roles(actor, org)
        if not roles:
            raise Forbidden("只有本组织或上级的管理员、组织员可以管理授权")
        role = _role_of(form, roles)
        user = get_user_by_username(s, form.username) if form.username else None
        if user is None:
            form.errors["username"] = (
                f"用户不存在：{form.username}" if form.username else "请填写用户名"
            )
        if form.errors or role is None or user is None:
            s.rollback()
            return _org_page(request, s, actor, org, grant_form=form, status_code=422)
        grant_role(s, user=user, org_code=org.code, role=role, actor_id=actor.user_id)
    flash(
        request, f"已授予 {user.display_name}（{user.username}）{org.name}的{ROLE_LABELS[role]}角色"
    )
    return redirect(f"/orgs/{org_id}#grants")


@router.post("/orgs/{org_id:int}/users", dependencies=[Depends(csrf_protect)])
def add_user_here(
    request: Request,
    org_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
    data: Annotated[FormData, Depends(form_data)],
) -> Response:
    """Create a user and grant her a role on this organisation, in one transaction."""
    form = GrantForm(
        username=str(data.get("username") or "").strip(),
        display_name=str(data.get("display_name") or "").strip(),
        email=str(data.get("email") or "").strip(),
        role=str(data.get("role") or ""),
    )
    password = str(data.get("password") or "")
    engine = engine_of(request)
    with unit_of_work(engine) as s:
        org = _visible(s, actor, org_id)
        roles = manageable_roles(actor, org)
        if not roles:
            raise Forbidden("只有本组织或上级的管理员、组织员可以添加用户")
        role = _role_of(form, roles)
        if len(form.username) > 64:
            form.errors["username"] = "用户名最长 64 个字符"
        if len(form.display_name) > 100:
            form.errors["display_name"] = "姓名最长 100 个字"
        if form.email and ("@" not in form.email or len(form.email) > 200):
            form.errors["email"] = "电子邮箱格式不正确"
        user = None
        if not form.errors and role is not None:
            try:
                with s.begin_nested():
                    user = add_user(
                        s,
                        username=form.username,
                        password=password,
                        display_name=form.display_name or None,
                        email=form.email or None,
                        actor_id=actor.user_id,
                    )
            except (InvalidInput, Conflict) as exc:
                form.errors[_field_of(exc, "username")] = exc.message
        if form.errors or role is None or user is None:
            s.rollback()
            return _org_page(request, s, actor, org, user_form=form, status_code=422)
        grant_role(s, user=user, org_code=org.code, role=role, actor_id=actor.user_id)
        name = user.display_name
    flash(request, f"已添加用户 {name}，并授予{org.name}的{ROLE_LABELS[role]}角色")
    return redirect(f"/orgs/{org_id}#grants")


@router.post(
    "/orgs/{org_id:int}/grants/{grant_id:int}/revoke", dependencies=[Depends(csrf_protect)]
)
def revoke(
    request: Request,
    org_id: IdPath,
    grant_id: IdPath,
    actor: Annotated[Actor, Depends(page_actor)],
) -> Response:
    """Revoke a grant on this organisation or below it."""
    with unit_of_work(engine_of(request)) as s:
        org = _visible(s, actor, org_id)
        grant = s.get(Grant, grant_id)
        target = s.get(Organisation, grant.org_id) if grant else None
        if grant is None or target is None or not is_within(target.path, org.path):
            raise NotFound("授权不存在")
        if Role(grant.role) not in manageable_roles(actor, target):
            raise Forbidden("您不能撤销这项授权")
        if grant.user_id == actor.user_id:
            raise Forbidden("不能撤销自己的授权，请由上级管理员办理")
        user = s.get(User, grant.user_id)
        label = f"{user.display_name if user else ''} 在{target.name}的{ROLE_LABELS[Role(grant.role)]}角色"
        revoke_grant(s, grant=grant, actor_id=actor.user_id)
    flash(request, f"已撤销 {label}")
    return redirect(f"/orgs/{org_id}#grants")


# --------------------------------------------------------------------------- import


@router.get("/orgs/import", response_class=HTMLResponse)
def import_form(request: Request, actor: Annotated[Actor, Depends(page_actor)]) -> HTMLResponse:
    """The upload form."""
    if not _may_import(actor):
        raise Forbidden("只有组织员或管理员可以导入组织")
    return _import_page(request, 200)


@router.get("/orgs/import/sample.csv")
def import_sample(request: Request, actor: Annotated[Actor, Depends(page_actor)]) -> Response:
    """A sample file with every column, hung under the top organisation the reader manages
    (so it imports as it is), or under `上级编码` to be filled in."""
    with read_session(engine_of(request)) as s:
        code = _sample_parent(s, actor)
    return Response(
        ("\ufeff" + SAMPLE_CSV.format(code=code)).encode("utf-8"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": "attachment; filename=orgs-sample.csv"},
    )


def _sample_parent(s: Session, actor: Actor) -> str:
    managed = [g for g in actor.grants if g.role in MANAGE_ROLES]
    if not managed:
        return "上级编码"
    top = min(managed, key=lambda g: (g.org_path.count("/"), g.org_path))
    org = s.get(Organisation, top.org_id)
    return org.code if org is not None else "上级编码"


def _import_errors(exc: InvalidInput) -> list[RowError]:
    details = exc.details if isinstance(exc.details, list) else []
    out = [
        RowError(int(d.get("row", 0)), str(d.get("column", "")), str(d.get("message", "")))
        for d in details
        if isinstance(d, dict) and "row" in d
    ]
    return out


@router.post("/orgs/import", response_class=HTMLResponse, dependencies=[Depends(csrf_protect)])
def import_upload(
    request: Request,
    actor: Annotated[Actor, Depends(page_actor)],
    data: Annotated[FormData, Depends(form_data)],
) -> Response:
    """Validate the whole file against the tree and the importer's reach; write all or nothing.

    A sync route, so FastAPI runs it in a worker thread: the file is read there, within the
    `states.sheets` limits, holding one of the import slots the API uses too.
    """
    if not _may_import(actor):
        raise Forbidden("只有组织员或管理员可以导入组织")
    upload = data.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _import_page(request, 422, file_error="请选择文件")
    suffix = Path(upload.filename).suffix.lower()
    message = unsupported(suffix)
    if message is not None:
        return _import_page(request, 422, file_error=message)
    try:
        with import_slot():
            return _import_rows(request, actor, read_upload(upload.file, suffix), upload.filename)
    except TooLarge as exc:
        return _import_page(request, 413, file_error=exc.message)
    except InvalidInput as exc:
        return _import_page(request, 422, file_error=exc.message)
    except ImportBusy:
        return _import_page(request, 503, file_error=BUSY_MESSAGE)


def _import_page(request: Request, status: int, **context: Any) -> HTMLResponse:
    limits = SheetLimits.from_env()
    context = {"headers": list(HEADERS.values()), "limits": limits, **context}
    return render(request, "import.html", context, status)


def _import_rows(request: Request, actor: Actor, rows: ParsedRows, filename: str) -> Response:
    with unit_of_work(engine_of(request)) as s:
        errors = scope_errors(s, rows, actor.reaches)
        if errors:  # show the file's other problems too, so one round of fixes is enough
            errors += validate(s, rows)
        else:
            try:
                result = run_import(s, rows, actor_id=actor.user_id)
            except InvalidInput as exc:  # the importer validated the file: nothing written
                errors = _import_errors(exc) or [RowError(0, "", exc.message)]
        if errors:
            s.rollback()
    if errors:
        unique = sorted(set(errors), key=lambda e: (e.row, e.column))
        return _import_page(request, 422, errors=unique, filename=filename)
    flash(
        request,
        f"导入完成：新建 {result.created} 个、更新 {result.updated} 个、"
        f"未变 {result.unchanged} 个组织",
    )
    return redirect("/orgs")

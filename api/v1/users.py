"""Users and grants for a mobile client: list, add, grant, revoke (the organisation pages' rules).

See `states.user_admin`: admins and organisers on an organisation or above manage its users;
organisers never grant or revoke the admin role; nobody revokes her own grant; anything outside
the caller's reach is 404. `POST /orgs/{id}/users` answers the new account's initial password
once; it takes no Idempotency-Key, because a replayed response would have to keep the password.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import MAX_ID, Idem, IdPath, Page, engine_of, idempotency_key, page, reader, write
from api.errors import responses
from api.security import roles
from api.v1.convert import org_brief
from states import user_admin
from states.db import unit_of_work
from states.models import ROLE_LABELS, Grant, Organisation, Role, User
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["用户与授权"])
managers = roles(Role.ADMIN, Role.ORGANISER)
ROLE_HELP = "角色：" + "、".join(f"{r.value}（{label}）" for r, label in ROLE_LABELS.items())


class GrantOut(S.Out):
    id: int
    user_id: int
    org: S.OrgBrief
    role: Role
    role_label: str
    created_at: S.LocalTime


class UserOut(S.Out):
    id: int
    username: str
    display_name: str
    email: str | None
    must_change_password: bool = Field(description="尚在使用初始密码（首次登录须修改）")
    grants: list[GrantOut] = Field(description="在本组织及下级的授权")


class NewUserIn(S.In):
    username: str = Field(min_length=1, max_length=64, description="用户名（字母或数字开头）")
    display_name: str = Field(min_length=1, max_length=100, description="姓名")
    role: Role = Field(description=ROLE_HELP)
    email: str | None = Field(None, max_length=200, description="电子邮箱（可不填）")


class NewUserOut(S.Out):
    user: UserOut
    initial_password: str = Field(description="初始密码，只显示这一次；首次登录须修改")


class GrantIn(S.In):
    org_id: int = Field(ge=1, le=MAX_ID, description="授权所在组织的编号")
    role: Role = Field(description=ROLE_HELP)


def grant_out(grant: Grant, org: Organisation) -> GrantOut:
    role = Role(grant.role)
    return GrantOut(
        id=grant.id or 0,
        user_id=grant.user_id,
        org=org_brief(org),
        role=role,
        role_label=ROLE_LABELS[role],
        created_at=grant.created_at,
    )


def user_out(user: User, grants: list[tuple[Grant, Organisation]]) -> UserOut:
    return UserOut(
        id=user.id or 0,
        username=user.username,
        display_name=user.display_name,
        email=user.email,
        must_change_password=user.must_change_password,
        grants=[grant_out(g, o) for g, o in grants],
    )


@router.get(
    "/orgs/{org_id}/users",
    summary="本组织及下级的用户与授权",
    response_model=S.Page[UserOut],
    responses=responses(401, 403, 404, 422),
)
def list_users(
    org_id: IdPath,
    actor: Actor = Depends(managers),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[UserOut]:
    """列出在本组织及其下级持有授权的用户（按用户名排序，分页），每人附本组织及下级范围内的授权。
    仅本组织或上级的管理员、组织员可查看；不在管辖范围内的组织返回 404。"""
    org = user_admin.visible_org(s, actor, org_id)
    user_admin.managed_roles(actor, org)
    rows, total = user_admin.users_in_subtree(s, org, limit=p.limit, offset=p.offset)
    items = [user_out(r.user, r.grants) for r in rows]
    return S.Page(items=items, total=total, limit=p.limit, offset=p.offset)


@router.post(
    "/orgs/{org_id}/users",
    summary="在本组织添加用户并授权",
    status_code=201,
    response_model=NewUserOut,
    responses=responses(401, 403, 404, 409, 422),
)
def add_user(
    org_id: IdPath, body: NewUserIn, request: Request, actor: Actor = Depends(managers)
) -> NewUserOut:
    """新建账号并授予本组织的一个角色（同一事务）。返回随机初始密码，只显示这一次，首次登录须修改。
    组织员不能授予管理员角色（403）；用户名已存在返回 409；字段有误返回 422 并指出字段。"""
    with unit_of_work(engine_of(request)) as s:
        org = user_admin.visible_org(s, actor, org_id)
        made = user_admin.add_user_here(
            s,
            actor,
            org,
            username=body.username,
            display_name=body.display_name,
            role=body.role,
            email=body.email or None,
        )
        out = NewUserOut(
            user=user_out(made.user, [(made.grant, org)]), initial_password=made.password
        )
    return out


@router.post(
    "/users/{user_id}/grants",
    summary="授予用户角色",
    status_code=201,
    response_model=GrantOut,
    responses=responses(401, 403, 404, 409, 422),
)
def add_grant(
    user_id: IdPath,
    body: GrantIn,
    request: Request,
    actor: Actor = Depends(managers),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """授予用户在某组织的角色。用户须在本人管辖范围内持有授权，组织须在管辖范围内（否则 404）；
    组织员不能授予管理员角色（403）；已有同一授权返回 409（规则 already_granted）。"""

    def change(s: Session, actor: Actor) -> GrantOut:
        user = user_admin.visible_user(s, actor, user_id)
        org = user_admin.visible_org(s, actor, body.org_id)
        return grant_out(user_admin.add_grant(s, actor, user, org, body.role), org)

    return write(request, actor, idem, 201, change)


@router.delete(
    "/grants/{grant_id}",
    summary="撤销授权",
    response_model=GrantOut,
    responses=responses(401, 403, 404, 409, 422),
)
def revoke_grant(
    grant_id: IdPath,
    request: Request,
    actor: Actor = Depends(managers),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """撤销一项授权并返回被撤销的授权。组织员不能撤销管理员角色（403）；不能撤销自己的授权（409，规则
    own_grant）；不在管辖范围内的授权返回 404。"""

    def change(s: Session, actor: Actor) -> GrantOut:
        grant, org = user_admin.revoke(s, actor, grant_id)
        return grant_out(grant, org)

    return write(request, actor, idem, 200, change)

"""Log-in, log-out and who am I."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session, col, select

from api import schemas as S
from api.deps import engine_of, reader
from api.errors import responses
from api.security import authenticated, bearer, public
from api.v1.convert import org_brief
from states.db import unit_of_work
from states.errors import Unauthenticated
from states.models import ROLE_LABELS, SUBTREE_ROLES, Organisation, User
from states.tokens import TOKEN_TTL, issue_token, revoke_token, verify_login
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["登录"])


@router.post(
    "/auth/token",
    summary="登录，取得令牌",
    response_model=S.TokenOut,
    responses=responses(401, 422, 429),
)
def login(body: S.TokenIn, request: Request, _: None = Depends(public)) -> S.TokenOut:
    """用户名和密码换取访问令牌（默认 12 小时有效）。连续失败过多会被限流（429，见 Retry-After）。"""
    client = request.client.host if request.client else "unknown"
    with unit_of_work(engine_of(request)) as s:
        user = verify_login(s, body.username, body.password, client)
        issued = issue_token(s, user.id or 0) if user is not None else None
    if issued is None:  # the failure was recorded (committed) above
        raise Unauthenticated("用户名或密码错误")
    return S.TokenOut(
        access_token=issued.token,
        expires_at=issued.expires_at,
        expires_in=int(TOKEN_TTL.total_seconds()),
    )


@router.post(
    "/auth/logout",
    summary="退出登录（作废当前令牌）",
    status_code=204,
    responses=responses(401),
)
def logout(
    request: Request,
    actor: Actor = Depends(authenticated),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> None:
    """作废本次请求所用的令牌。"""
    assert credentials is not None
    with unit_of_work(engine_of(request)) as s:
        revoke_token(s, credentials.credentials)


@router.get(
    "/me", summary="当前用户、角色与管辖范围", response_model=S.MeOut, responses=responses(401)
)
def me(actor: Actor = Depends(authenticated), s: Session = Depends(reader)) -> S.MeOut:
    """返回当前用户、其在各组织的角色，以及可管辖的组织（委员等角色含下级，书记仅本组织）。"""
    user = s.get(User, actor.user_id)
    assert user is not None
    ids = sorted({g.org_id for g in actor.grants})
    orgs = {
        o.id: o
        for o in s.execute(select(Organisation).where(col(Organisation.id).in_(ids))).scalars()
    }
    grants = [
        S.GrantOut(org=org_brief(orgs[g.org_id]), role=g.role.value, role_label=ROLE_LABELS[g.role])
        for g in actor.grants
        if g.org_id in orgs
    ]
    # The reach: each granted organisation, minus those inside another one with a subtree role.
    subtree_paths = [g.org_path for g in actor.grants if g.role in SUBTREE_ROLES]
    reach = []
    for oid in ids:
        o = orgs.get(oid)
        if o is None:
            continue
        if any(p != o.path and o.path.startswith(p) for p in subtree_paths):
            continue
        reach.append(org_brief(o))
    return S.MeOut(
        id=user.id or 0,
        username=user.username,
        display_name=user.display_name,
        grants=grants,
        reach=reach,
    )

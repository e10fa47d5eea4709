"""Log-in, log-out and who am I."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from api import schemas as S
from api.clientaddr import client_address
from api.deps import engine_of, reader
from api.errors import responses
from api.security import authenticated, bearer, public
from api.v1.convert import org_brief
from states.db import unit_of_work
from states.errors import Unauthenticated
from states.models import ROLE_LABELS, SUBTREE_ROLES, Organisation, User
from states.tokens import (
    TOKEN_TTL,
    IssuedToken,
    finish_login,
    reserve_attempt,
    revoke_token,
)
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["登录"])


async def log_in(
    request: Request, username: str, password: str, *, label: str
) -> IssuedToken | None:
    """The log-in flow for the API and the pages, off the event loop where it blocks.

    The attempt is reserved (and counted) in a worker thread; a slowed user name waits with
    asyncio.sleep, holding no thread; the password check runs in a worker thread too.
    Raises RateLimited over a limit; returns None for a wrong name or password.
    """
    engine = engine_of(request)
    client = client_address(request)
    attempt = await run_in_threadpool(reserve_attempt, engine, username, client)
    if attempt.delay:
        await asyncio.sleep(attempt.delay)
    return await run_in_threadpool(finish_login, engine, attempt, password, label=label)


@router.post(
    "/auth/token",
    summary="登录，取得令牌",
    response_model=S.TokenOut,
    responses=responses(401, 422, 429),
)
async def login(body: S.TokenIn, request: Request, _: None = Depends(public)) -> S.TokenOut:
    """用户名和密码换取访问令牌（默认 12 小时有效）。

    同一用户名在同一客户端地址连续失败 5 次、或同一地址 15 分钟内失败 50 次，会被限流（429，见 Retry-After），
    只影响该地址；同一用户名在各地址合计失败过多时，每次尝试稍作延迟，但正确的密码仍可登录。
    """
    issued = await log_in(request, body.username, body.password, label="api")
    if issued is None:  # the failure was recorded (committed)
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

"""One's own account: change the password (`POST /api/v1/me/password`)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api import schemas as S
from api.clientaddr import client_address
from api.deps import engine_of
from api.errors import responses
from api.security import authenticated, bearer
from states.accounts import MAX_LENGTH, change_own_password
from states.timeutil import utcnow
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["登录"])


class PasswordIn(S.In):
    # Passwords as typed: a space at either end is refused by the rules, never stripped.
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    old_password: str = Field(min_length=1, max_length=200, description="原密码")
    new_password: str = Field(
        min_length=1, max_length=200, description=f"新密码：至少 8 位、最长 {MAX_LENGTH} 位"
    )


class PasswordOut(S.Out):
    message: str = Field(description="结果说明")
    revoked_sessions: int = Field(description="被注销的其他登录（令牌）数")
    password_changed_at: S.LocalTime


@router.post(
    "/me/password",
    summary="修改本人密码",
    response_model=PasswordOut,
    responses=responses(401, 422, 429),
)
async def change_password(
    body: PasswordIn,
    request: Request,
    actor: Actor = Depends(authenticated),
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
) -> PasswordOut:
    """用原密码换新密码。新密码至少 8 位，须同时含字母和数字，不能包含用户名、不能与原密码相同、
    不能是常见密码（不符合时 422，`details.problems` 逐条列出）。原密码错误时 422（`details.field` 为
    `old_password`），并与登录失败一并计入限流（429）。成功后本人的其他全部令牌与网页登录失效，
    本次请求所用的令牌仍然有效。
    """
    keep = credentials.credentials if credentials is not None else None
    changed = await run_in_threadpool(
        lambda: change_own_password(
            engine_of(request),
            user_id=actor.user_id,
            client=client_address(request),
            old_password=body.old_password,
            new_password=body.new_password,
            keep_token=keep,
        )
    )
    return PasswordOut(
        message="密码已修改，其他登录已全部退出",
        revoked_sessions=changed.revoked,
        password_changed_at=utcnow(),
    )

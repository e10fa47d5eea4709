"""Who may call a route. Every route declares it with one of these dependencies.

Deny by default: `authenticated` needs a live bearer token; `roles(...)` also needs one of the
roles somewhere. Which objects a caller reaches is then decided by the services (`states`), and
an object out of reach looks exactly like one that does not exist (404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Connection
from sqlmodel import Session

from states.db import one_read, retry_dead_connection
from states.errors import Forbidden, Unauthenticated
from states.models import ROLE_LABELS, Role
from states.tokens import actor_for_token
from states.users import Actor

bearer = HTTPBearer(
    auto_error=False, description="登录后取得的令牌：`Authorization: Bearer <token>`"
)

PUBLIC = "public"
AUTHENTICATED = "authenticated"


def _declare(dep: Callable[..., Any], access: str | tuple[Role, ...]) -> Callable[..., Any]:
    dep.access = access  # type: ignore[attr-defined]
    return dep


async def _public() -> None:  # async: no worker thread for public routes
    return None


public = _declare(_public, PUBLIC)


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or not credentials.credentials:
        raise Unauthenticated("请先登录（缺少令牌）")
    return credentials.credentials


def _admitted(actor: Actor | None, path: str) -> Actor:
    """The token's actor, if it may call `path`: 401 for a dead token, 403 before the first
    password change (except `PASSWORD_FIRST`)."""
    if actor is None:
        raise Unauthenticated("登录已失效，请重新登录")
    if actor.must_change_password and path not in PASSWORD_FIRST:
        raise Forbidden(
            "请先修改初始密码（POST /api/v1/me/password）",
            details={"rule": "must_change_password"},
        )
    return actor


def _authenticated(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Actor:
    token = _token(credentials)
    return _admitted(retry_dead_connection(lambda: _actor(request, token)), request.url.path)


def _actor(request: Request, token: str) -> Actor | None:
    with one_read(request.app.state.engine) as conn:
        return actor_for_token(conn, token)


#: What a token of an initial or reset password may call before the password is changed.
PASSWORD_FIRST = frozenset({"/api/v1/me", "/api/v1/me/password", "/api/v1/auth/logout"})

authenticated = _declare(_authenticated, AUTHENTICATED)


@dataclass(frozen=True)
class Bearer:
    """A state-changing call's token, resolved to its actor inside the call's own transaction
    (`api.deps.write`): the token, the actor's grants and the change are read and written on
    one connection, and the call costs one worker thread, not two."""

    token: str
    path: str

    def actor(self, db: Session | Connection) -> Actor:
        return _admitted(actor_for_token(db, self.token), self.path)


async def _caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Bearer:  # async: reads nothing, so no worker thread of its own
    return Bearer(_token(credentials), request.url.path)


#: For routes that change state through `api.deps.write`: a logged-in caller, checked in the
#: change's transaction.
caller = _declare(_caller, AUTHENTICATED)


def roles(*allowed: Role) -> Callable[..., Actor]:
    """A dependency: a logged-in caller holding one of `allowed` on some organisation."""

    def _dep(actor: Actor = Depends(_authenticated)) -> Actor:
        if not any(actor.has_role(r) for r in allowed):
            names = "或".join(ROLE_LABELS[r] for r in allowed)
            raise Forbidden(f"此操作需要{names}权限", details={"roles": [r.value for r in allowed]})
        return actor

    return _declare(_dep, tuple(allowed))


def access_of(dependency: Callable[..., Any]) -> str | tuple[Role, ...] | None:
    """Return what a dependency declares (for the authorisation matrix), or None."""
    return getattr(dependency, "access", None)


def describe_access(access: str | tuple[Role, ...]) -> str:
    if access == PUBLIC:
        return "无需登录"
    if access == AUTHENTICATED:
        return "已登录用户（对象须在本人管辖范围内）"
    assert isinstance(access, tuple)
    return "、".join(ROLE_LABELS[r] for r in access) + "（对象须在本人管辖范围内）"

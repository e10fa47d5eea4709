"""Log-in and log-out pages: a session cookie over the API's token machinery."""

from __future__ import annotations

import math

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from api.v1.auth import log_in
from api.web import session as web
from api.web.sso import login_buttons
from states.db import read_session, unit_of_work
from states.errors import RateLimited
from states.models import User
from states.tokens import TOKEN_TTL, revoke_token
from states.users import Actor

router = APIRouter(include_in_schema=False)


def _login_page(
    request: Request,
    *,
    next_url: str,
    username: str = "",
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    return web.render(
        request,
        "login.html",
        {"next": next_url, "username": username, "error": error, "platforms": login_buttons()},
        status_code=status_code,
    )


@router.get("/login")
def login_form(request: Request, actor: Actor | None = Depends(web.optional_actor)) -> Response:
    next_url = web.safe_next(request.query_params.get("next"))
    if actor is not None:
        return web.redirect(next_url)
    return _login_page(request, next_url=next_url)


@router.post("/login", dependencies=[Depends(web.csrf_protect)])
async def login(request: Request, _: Actor | None = Depends(web.optional_actor)) -> Response:
    form = await request.form()
    username = str(form.get("username") or "").strip()[:64]
    password = str(form.get("password") or "")[:256]
    next_url = web.safe_next(str(form.get("next") or ""))
    if not username or not password:
        return _login_page(
            request,
            next_url=next_url,
            username=username,
            error="请输入用户名和密码",
            status_code=422,
        )
    try:
        issued = await log_in(request, username, password, label="web")
    except RateLimited as exc:
        minutes = max(1, math.ceil(exc.retry_after / 60))
        return _login_page(
            request,
            next_url=next_url,
            username=username,
            error=f"尝试过多，请 {minutes} 分钟后再试",
            status_code=429,
        )
    if issued is None:  # the failure is recorded (committed) for the rate limit
        return _login_page(
            request,
            next_url=next_url,
            username=username,
            error="用户名或密码错误",
            status_code=400,
        )
    if _must_change_password(request, issued.user_id):
        next_url = web.password_page_url(next_url)
    response = web.redirect(next_url)
    web.set_session_cookie(request, response, issued.token, int(TOKEN_TTL.total_seconds()))
    return response


def _must_change_password(request: Request, user_id: int) -> bool:
    """An initial or reset password: the 修改密码 page comes first (api/web/account.py)."""
    with read_session(request.app.state.engine) as s:
        user = s.get(User, user_id)
        return bool(user is not None and user.must_change_password)


@router.post("/logout", dependencies=[Depends(web.csrf_protect)])
def logout(request: Request, actor: Actor | None = Depends(web.optional_actor)) -> Response:
    token = web.session_token(request)
    if token is not None:
        with unit_of_work(request.app.state.engine) as s:
            revoke_token(s, token)
    web.flash(request, "您已退出登录", "info")
    response = web.redirect("/login")
    web.clear_session_cookie(request, response)
    return response

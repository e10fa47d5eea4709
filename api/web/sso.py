"""Sign in with WeCom, DingTalk or Feishu, and 我的账号 where a user binds those accounts.

Routes, made for each platform `p` in `PROVIDERS` (literal paths; an unconfigured one is 404):

* `POST /sso/{p}/login` – from the log-in page's button: a fresh `login` state, then 303 to the
  platform's sign-in page.
* `POST /account/sso/{p}/bind` – from 我的账号: a `bind` state tied to the user, then the same.
* `POST /account/sso/{p}/unbind` – remove the binding (audited).
* `GET /sso/{p}/callback` – the platform sends the browser back here with the code and state.
* `GET /account` – 我的账号: who one is, 修改密码, the platform accounts bound or not.

The state travels in a cookie too (`STATE_COOKIE`, `purpose.state`, path `/sso/`, 10 minutes),
so a callback URL opened in another browser, or one whose purpose differs, is refused (400)
before anything is used; the state itself is consumed before the platform is asked, so the same
callback URL a second time is refused however the first one ended.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import engine_of
from api.web import session as web
from states.db import read_session, unit_of_work
from states.errors import Conflict, Forbidden, NotFound
from states.sso import service
from states.sso.models import PROVIDERS
from states.sso.providers import (
    LABELS,
    PlatformError,
    Settings,
    callback_code,
    configured,
    settings,
    subject_for,
)
from states.sso.providers import authorize_url as platform_url
from states.tokens import TOKEN_TTL, issue_token, revoke_token
from states.users import Actor

router = APIRouter(include_in_schema=False)
STATE_COOKIE = "dj_sso"
ACCOUNT_PAGE = "/account"
ActorDep = Annotated[Actor, Depends(web.page_actor)]
MaybeActor = Annotated[Actor | None, Depends(web.optional_actor)]


def _settings(provider: str) -> Settings:
    cfg = settings(provider)
    if cfg is None:
        raise NotFound("未配置该平台")
    return cfg


def redirect_uri(request: Request, provider: str) -> str:
    """Our callback as the platform must see it (`DANGJIAN_BASE_URL`, else this request's host)."""
    base = os.environ.get("DANGJIAN_BASE_URL", "").strip() or str(request.base_url)
    return f"{base.rstrip('/')}/sso/{provider}/callback"


def _to_platform(request: Request, cfg: Settings, purpose: str, user_id: int | None) -> Response:
    """A new state (stored, and in the cookie), then 303 to the platform's sign-in page."""
    with unit_of_work(engine_of(request)) as s:
        state = service.begin(s, provider=cfg.provider, purpose=purpose, user_id=user_id)
    target = platform_url(cfg, redirect_uri=redirect_uri(request, cfg.provider), state=state)
    response = web.redirect(target)
    response.set_cookie(
        STATE_COOKIE,
        f"{purpose}.{state}",
        max_age=int(service.STATE_TTL.total_seconds()),
        path="/sso/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response


def _forget_state(response: Response) -> Response:
    response.delete_cookie(STATE_COOKIE, path="/sso/")
    return response


# --------------------------------------------------------------------------- pages


def login_buttons() -> list[dict[str, str]]:
    """The log-in page's platform buttons (only configured platforms)."""
    return [{"provider": c.provider, "label": c.label} for c in configured()]


@router.get(ACCOUNT_PAGE, response_class=HTMLResponse)
def account_page(request: Request, actor: ActorDep) -> HTMLResponse:
    """我的账号: name, roles, 修改密码, and each platform bound or not."""
    with read_session(engine_of(request)) as s:
        bound = {p: i.bound_at for p, i in service.identities(s, actor.user_id).items()}
    offered = {c.provider for c in configured()}
    rows = [
        {"provider": p, "label": LABELS[p], "bound": bound.get(p), "offered": p in offered}
        for p in PROVIDERS
        if p in offered or p in bound
    ]
    return web.render(request, "account.html", {"platforms": rows})


def _refusal(
    request: Request, status: int, title: str, message: str, *, forget: bool = True
) -> Response:
    """The refusal page; `forget` also drops this browser's state (once it has been used)."""
    page = web.error_page(request, status, title, message)
    return _forget_state(page) if forget else page


def _state_from_cookie(request: Request) -> tuple[str, str]:
    """(purpose, state) from this browser's cookie; ('', '') when absent or malformed."""
    purpose, _, state = request.cookies.get(STATE_COOKIE, "").partition(".")
    return (purpose, state) if purpose in service.PURPOSES and state else ("", "")


def callback(request: Request, actor: Actor | None, cfg: Settings) -> Response:
    """The platform's redirect back: check the state, ask the platform who it is, act."""
    sent = request.query_params.get("state", "")
    purpose, expected = _state_from_cookie(request)
    if not sent or not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return _refusal(request, 400, "登录请求无效", _STATE_HELP, forget=False)
    try:
        with unit_of_work(engine_of(request)) as s:
            used = service.consume(s, state=sent, provider=cfg.provider, purpose=purpose)
    except service.StateRefused as exc:
        return _refusal(request, 400, "登录请求无效", f"{exc.message}。{_RETRY}", forget=False)
    code = callback_code(cfg, request.query_params)
    try:
        subject = subject_for(cfg, code=code, redirect_uri=redirect_uri(request, cfg.provider))
    except PlatformError as exc:
        return _refusal(request, 502, f"{cfg.label}登录未成功", exc.message)
    if used.purpose == "bind":
        return _bind(request, actor, cfg, used.user_id, subject)
    return _log_in(request, cfg, subject)


_RETRY = "请回到登录页重新点击按钮登录"
_STATE_HELP = (
    "这个登录链接不是由本浏览器发起的，或已经用过、已过期（10 分钟内有效）。"
    "为了安全，没有登录也没有绑定任何账号。" + _RETRY
)


def _bind(
    request: Request, actor: Actor | None, cfg: Settings, user_id: int | None, subject: str
) -> Response:
    if actor is None or actor.user_id != user_id:
        message = (
            "这次绑定不是由当前登录的用户发起的，没有绑定任何账号。请登录后在“我的账号”重新绑定"
        )
        return _refusal(request, 400, "绑定请求无效", message)
    try:
        with unit_of_work(engine_of(request)) as s:
            added = service.bind(s, user_id=actor.user_id, provider=cfg.provider, subject=subject)
    except Conflict as exc:
        return _refusal(request, 409, f"不能绑定{cfg.label}", exc.message)
    if added:
        web.flash(request, f"已绑定{cfg.label}，以后可以在登录页“使用{cfg.label}登录”")
    else:
        web.flash(request, f"这个{cfg.label}账号已绑定在您的账号上", "info")
    return _forget_state(web.redirect(ACCOUNT_PAGE))


def _log_in(request: Request, cfg: Settings, subject: str) -> Response:
    try:
        with unit_of_work(engine_of(request)) as s:
            user = service.login_user(s, provider=cfg.provider, subject=subject)
            issued = issue_token(s, user.id or 0, label="web") if user is not None else None
            previous = web.session_token(request)
            if issued is not None and previous is not None:
                revoke_token(s, previous)  # the session this browser held before, if any
            must_change = bool(user is not None and user.must_change_password)
    except Forbidden as exc:
        return _refusal(request, 403, "不能登录", exc.message)
    if issued is None:
        context = {"label": cfg.label, "provider": cfg.provider}
        return _forget_state(web.render(request, "sso_unbound.html", context, status_code=403))
    target = web.password_page_url("/") if must_change else "/"
    response = _forget_state(web.redirect(target))
    web.set_session_cookie(request, response, issued.token, int(TOKEN_TTL.total_seconds()))
    return response


# --------------------------------------------------------------------------- per-platform routes


def _routes(provider: str) -> None:
    """Register the log-in, bind, unbind and callback routes of one platform."""
    csrf = [Depends(web.csrf_protect)]

    def start_login(request: Request, _: MaybeActor) -> Response:
        return _to_platform(request, _settings(provider), "login", None)

    def start_bind(request: Request, actor: ActorDep) -> Response:
        return _to_platform(request, _settings(provider), "bind", actor.user_id)

    def drop(request: Request, actor: ActorDep) -> Response:
        with unit_of_work(engine_of(request)) as s:
            service.unbind(s, user_id=actor.user_id, provider=provider)
        web.flash(request, f"已解除绑定{LABELS[provider]}")
        return web.redirect(ACCOUNT_PAGE)

    def back(request: Request, actor: MaybeActor) -> Response:
        return callback(request, actor, _settings(provider))

    routes: list[tuple[str, str, Callable[..., Any], list[Any]]] = [
        ("POST", f"/sso/{provider}/login", start_login, csrf),
        ("POST", f"/account/sso/{provider}/bind", start_bind, csrf),
        ("POST", f"/account/sso/{provider}/unbind", drop, csrf),
        ("GET", f"/sso/{provider}/callback", back, []),
    ]
    for method, path, endpoint, deps in routes:
        name = f"sso_{provider}_{endpoint.__name__}"
        router.add_api_route(path, endpoint, methods=[method], dependencies=deps, name=name)


for _provider in PROVIDERS:
    _routes(_provider)

"""Shared plumbing for the pages: session cookie, CSRF, the current actor, rendering.

Interface (other page modules rely on exactly these names):

* `templates` – the `Jinja2Templates` of `api/web/templates`.
* `page_actor(request) -> Actor` – dependency; no valid session → 303 to `/login?next=…`.
* `optional_actor(request) -> Actor | None` – dependency for pages that work either way.
* `csrf_protect(request) -> None` – dependency for every POST form; reads the form field
  `csrf_token`; a mismatch gives a 403 page.
* `render(request, name, context, status_code=200) -> HTMLResponse` – adds `actor`, `csrf_token`,
  `flashes`, `nav` and `now` to the context.
* `flash(request, message, level="success")` – a one-shot message shown on the next page.
* `redirect(url) -> RedirectResponse` – a 303 See Other.
* `not_found(request) -> HTMLResponse` – the 404 page (objects out of reach look missing).
* `install(app)` – mounts `/static` and the page error handlers.

How it works:

* The session is an opaque token from `states.tokens.issue_token` (label ``web``) in the
  HttpOnly, SameSite=Lax cookie `SESSION_COOKIE` (Secure on https). Only its SHA-256 is stored.
* The CSRF token of a form is an HMAC keyed by the session token (before log-in: by a random
  pre-session cookie), so it is per session, needs no server secret and cannot be derived from
  what the database stores. `csrf_protect` compares it in constant time.
* Flash messages travel in a short-lived cookie set by a small ASGI middleware, so that
  `flash(request, …)` followed by `return redirect(url)` needs no access to the response.
* Errors on page paths (everything outside `/api/`, the docs and `/static`) become HTML pages;
  the JSON API keeps its one error shape (`api.errors`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.security import AUTHENTICATED, PUBLIC, _declare
from states import glossary
from states.db import read_session
from states.errors import DomainError, Forbidden, NotFound, RateLimited, Unauthenticated
from states.models import ROLE_LABELS, Role
from states.timeutil import to_local, utcnow
from states.tokens import actor_for_token
from states.users import Actor

log = logging.getLogger("dangjian.web")

HERE = Path(__file__).parent
SESSION_COOKIE = "dj_session"
PRE_COOKIE = "dj_pre"
FLASH_COOKIE = "dj_flash"
CSRF_FIELD = "csrf_token"
#: Paths that are not pages: they keep the JSON error shape.
NON_PAGE_PREFIXES = ("/api/", "/static/", "/docs", "/openapi.json", "/redoc", "/healthz")

templates = Jinja2Templates(directory=str(HERE / "templates"))
#: The action words (同意, 退回, 撤回 …) every page reads from the one glossary.
templates.env.globals["words"] = glossary.ACTIONS


# --------------------------------------------------------------------------- template helpers


def _local(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format a UTC datetime in China Standard Time; '' for None."""
    return to_local(value).strftime(fmt) if value is not None else ""


templates.env.filters["local"] = _local
templates.env.filters["localdate"] = lambda v: _local(v, "%Y-%m-%d")


# --------------------------------------------------------------------------- exceptions


class LoginRequired(Exception):
    """No valid session on a page that needs one: answered with a 303 to the log-in page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


class CsrfFailed(Exception):
    """A POST form without the right CSRF token: answered with a 403 page."""


# --------------------------------------------------------------------------- sessions


def is_page(request: Request) -> bool:
    """Return whether the request is for a page (HTML errors) rather than the JSON API."""
    path = request.url.path
    return not any(path == p.rstrip("/") or path.startswith(p) for p in NON_PAGE_PREFIXES)


def session_token(request: Request) -> str | None:
    token = request.cookies.get(SESSION_COOKIE, "")
    return token if 0 < len(token) <= 128 else None


def _lookup(request: Request) -> Actor | None:
    """Return the actor behind the session cookie (cached on the request), or None."""
    if hasattr(request.state, "actor"):
        return request.state.actor
    token = session_token(request)
    actor = None
    if token is not None:
        with read_session(request.app.state.engine) as s:
            actor = actor_for_token(s, token)
    request.state.actor = actor
    return actor


def _next_of(request: Request) -> str:
    url = request.url.path
    if request.url.query:
        url += "?" + request.url.query
    return url


def _page_actor(request: Request) -> Actor:
    actor = _lookup(request)
    if actor is None:
        raise LoginRequired(_next_of(request) if request.method == "GET" else "/")
    require_own_password(request, actor)
    return actor


def _optional_actor(request: Request) -> Actor | None:
    return _lookup(request)


page_actor = _declare(_page_actor, AUTHENTICATED)
optional_actor = _declare(_optional_actor, PUBLIC)


def safe_next(value: str | None, default: str = "/") -> str:
    """Return `value` if it is a local path on this site, else `default` (no open redirects)."""
    if not value or len(value) > 2000:
        return default
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return default
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return default
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return default
    return value


def set_session_cookie(request: Request, response: Response, token: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(PRE_COOKIE, path="/")


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


# --------------------------------------------------------------------------- CSRF


def _csrf_for(basis: str) -> str:
    return hmac.new(basis.encode(), b"dangjian-csrf-v1", hashlib.sha256).hexdigest()


def _csrf_basis(request: Request) -> str | None:
    """The secret the CSRF token is derived from: the session token, else the pre-session one."""
    token = session_token(request)
    if token is not None:
        return token
    fresh = getattr(request.state, "new_pre", None)
    if fresh:
        return str(fresh)
    pre = request.cookies.get(PRE_COOKIE, "")
    return pre if 16 <= len(pre) <= 128 else None


def csrf_token(request: Request) -> str:
    """Return the CSRF token for forms on this page (creating a pre-session secret if needed)."""
    basis = _csrf_basis(request)
    if basis is None:
        basis = secrets.token_urlsafe(32)
        request.state.new_pre = basis
    return _csrf_for(basis)


async def csrf_protect(request: Request) -> None:
    """Dependency for every POST form: the `csrf_token` field must match the session's."""
    basis = _csrf_basis(request)
    try:
        form = await request.form()
    except Exception:  # an unparsable body is refused like a forged one
        raise CsrfFailed() from None
    sent = form.get(CSRF_FIELD)
    if basis is None or not isinstance(sent, str):
        raise CsrfFailed()
    if not hmac.compare_digest(sent.encode(), _csrf_for(basis).encode()):
        raise CsrfFailed()


async def form_fields(request: Request) -> dict[str, str]:
    """Dependency: the submitted form's text fields (the last value of a repeated name wins).

    Lets a page endpoint stay synchronous (run in the thread pool) while the form is parsed
    here; `csrf_protect` parsed it already, Starlette caches it on the request.
    """
    try:
        form = await request.form()
    except Exception:
        return {}
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


async def form_data(request: Request) -> FormData:
    """Dependency: the whole submitted form (repeated names, uploads), from Starlette's cache."""
    return await request.form()


# --------------------------------------------------------------------------- flash messages


@dataclass(frozen=True)
class Flash:
    level: str  # success | info | warning | error
    message: str


def flash(request: Request, message: str, level: str = "success") -> None:
    """Queue a one-shot message for the next page this browser shows."""
    pending = list(getattr(request.state, "flash_out", []))
    pending.append((level, message[:300]))
    request.state.flash_out = pending[-5:]


def _encode_flashes(items: list[tuple[str, str]]) -> str:
    raw = json.dumps(items, ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_flashes(value: str) -> list[Flash]:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        items = json.loads(raw)
        return [
            Flash(
                str(level) if level in ("success", "info", "warning", "error") else "info", str(m)
            )
            for level, m in items[:5]
        ]
    except Exception:
        return []


class FlashCookies:
    """ASGI middleware: write the flash messages a page queued into a cookie on its response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                pending = state.get("flash_out") if isinstance(state, dict) else None
                if pending:
                    cookie = (
                        f"{FLASH_COOKIE}={_encode_flashes(pending)}; Path=/; Max-Age=120; "
                        "HttpOnly; SameSite=Lax"
                    )
                    headers = list(message.get("headers", []))
                    headers.append((b"set-cookie", cookie.encode("latin-1")))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


# --------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    active: bool


def nav_for(request: Request, actor: Actor | None) -> list[NavItem]:
    """The top bar's links for this actor, the current section marked active."""
    if actor is None:
        return []
    path = request.url.path
    items: list[tuple[str, str]] = [("/", "工作台")]
    if actor.has_role(Role.COMMITTEE) or actor.has_role(Role.ADMIN):
        items.append(("/approvals", "审批"))
    if any(
        actor.has_role(r) for r in (Role.COMMITTEE, Role.ORGANISER, Role.ADMIN, Role.SUPERVISOR)
    ):
        items.append(("/campaigns", "活动"))
    if actor.has_role(Role.ADMIN) or actor.has_role(Role.ORGANISER):
        items.append(("/orgs", "组织"))
    if actor.has_role(Role.SUPERVISOR):
        items.append(("/supervision", "督导"))
    items.append(("/notices", "消息"))
    out = []
    for href, label in items:
        if href == "/":
            active = path == "/" or path.startswith("/runs/")
        else:
            active = path == href or path.startswith(href + "/")
        out.append(NavItem(href, label, active))
    return out


def role_summary(actor: Actor) -> str:
    """'书记、委员' – the distinct roles the actor holds, for the top bar."""
    seen = dict.fromkeys(g.role for g in actor.grants)
    return "、".join(ROLE_LABELS[r] for r in seen)


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """Render a page template with the shared context (actor, csrf_token, flashes, nav, now)."""
    actor = _lookup_quietly(request)
    flashes = [Flash(level, msg) for level, msg in getattr(request.state, "flash_out", [])]
    request.state.flash_out = []
    had_cookie = FLASH_COOKIE in request.cookies
    if had_cookie:
        flashes = _decode_flashes(request.cookies[FLASH_COOKIE]) + flashes
    ctx: dict[str, Any] = {
        "actor": actor,
        "actor_roles": role_summary(actor) if actor else "",
        "csrf_token": csrf_token(request),
        "csrf_field": CSRF_FIELD,
        "flashes": flashes,
        "nav": nav_for(request, actor),
        "now": utcnow(),
        "path": request.url.path,
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(request, name, ctx, status_code=status_code)
    if had_cookie:
        response.delete_cookie(FLASH_COOKIE, path="/")
    fresh = getattr(request.state, "new_pre", None)
    if fresh:
        response.set_cookie(
            PRE_COOKIE,
            str(fresh),
            max_age=2 * 3600,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _lookup_quietly(request: Request) -> Actor | None:
    try:
        return _lookup(request)
    except Exception:  # an error page must render even when the database is down
        log.exception("session look-up failed")
        return None


def redirect(url: str) -> RedirectResponse:
    """A 303 See Other to `url` (after a POST, the browser GETs the next page)."""
    return RedirectResponse(url, status_code=303)


def error_page(
    request: Request, status_code: int, title: str, message: str, reasons: list[str] | None = None
) -> HTMLResponse:
    return render(
        request,
        "error.html",
        {"title": title, "message": message, "reasons": reasons or [], "status": status_code},
        status_code=status_code,
    )


def not_found(request: Request) -> HTMLResponse:
    """The 404 page: objects out of reach look exactly like missing ones."""
    return error_page(request, 404, "页面不存在", "您要找的页面不存在，或不在您的管辖范围内。")


def forbidden(request: Request, message: str = "您没有执行此操作的权限。") -> HTMLResponse:
    return error_page(request, 403, "无权操作", message)


def login_redirect(next_url: str) -> RedirectResponse:
    target = "/login"
    if next_url and next_url != "/":
        target += "?next=" + quote(next_url, safe="/")
    return redirect(target)


def domain_reasons(exc: DomainError) -> list[str]:
    """Every reason a domain error carries (e.g. each unmet requirement), in words."""
    details = exc.details
    out: list[str] = []
    if isinstance(details, list):
        for d in details:
            if isinstance(d, dict) and d.get("reason"):
                out.append(str(d["reason"]))
    return out


# --------------------------------------------------------------------------- forced password change

#: The one page (besides /logout) an account with an initial or reset password may open.
PASSWORD_PAGE = "/account/password"


class PasswordChangeRequired(Exception):
    """An initial or reset password: answered with a 303 to the 修改密码 page."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url


def require_own_password(request: Request, actor: Actor) -> None:
    """Send an account that must change its password to the 修改密码 page first (api/web/account)."""
    if actor.must_change_password and request.url.path != PASSWORD_PAGE:
        raise PasswordChangeRequired(_next_of(request) if request.method == "GET" else "/")


def password_page_url(next_url: str) -> str:
    """The 修改密码 page, returning to `next_url` afterwards."""
    next_url = safe_next(next_url)
    return PASSWORD_PAGE + ("?next=" + quote(next_url, safe="/") if next_url != "/" else "")


# --------------------------------------------------------------------------- install


Handler = Callable[[Request, Any], Awaitable[Response]]


def install(app: FastAPI) -> None:
    """Mount `/static`, the flash-cookie middleware and the page error handlers."""
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(FlashCookies)
    json_handlers: dict[Any, Handler] = dict(app.exception_handlers)

    def delegate(cls: Any, request: Request, exc: Exception) -> Awaitable[Response]:
        return json_handlers[cls](request, exc)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return login_redirect(safe_next(exc.next_url))

    @app.exception_handler(PasswordChangeRequired)
    async def password_change_required(request: Request, exc: PasswordChangeRequired) -> Response:
        return redirect(password_page_url(exc.next_url))

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed) -> Response:
        return error_page(
            request, 403, "请求已失效", "表单已过期或来源不明，请返回上一页、刷新后重新提交。"
        )

    @app.exception_handler(DomainError)
    async def domain_error(request: Request, exc: DomainError) -> Response:
        if not is_page(request):
            return await delegate(DomainError, request, exc)
        if isinstance(exc, NotFound):
            return not_found(request)
        if isinstance(exc, Unauthenticated):
            return login_redirect(safe_next(_next_of(request)))
        if isinstance(exc, Forbidden):
            return forbidden(request, exc.message)
        if isinstance(exc, RateLimited):
            return error_page(request, 429, "请求过于频繁", exc.message)
        status = 409 if exc.code in ("conflict", "requirements_unmet", "concurrent_update") else 422
        return error_page(request, status, "无法办理", exc.message, domain_reasons(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        if not is_page(request):
            return await delegate(RequestValidationError, request, exc)
        if any(str(e.get("loc", ("",))[0]) == "path" for e in exc.errors()):
            return not_found(request)  # /runs/abc is a page that does not exist
        return error_page(request, 422, "内容有误", "提交的内容有误，请返回检查后重试。")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if not is_page(request) or exc.status_code not in (404, 405):
            return await delegate(StarletteHTTPException, request, exc)
        if exc.status_code == 404:
            return not_found(request)
        return error_page(request, 405, "无法访问", "该页面不支持这种访问方式。")

    @app.exception_handler(OperationalError)
    async def database_unavailable(request: Request, exc: OperationalError) -> Response:
        if not is_page(request):
            return await delegate(OperationalError, request, exc)
        log.warning("database unavailable on a page: %s", exc.orig)
        return HTMLResponse(_PLAIN_503, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        if not is_page(request):
            return await delegate(Exception, request, exc)
        log.exception("unexpected error on a page", exc_info=exc)
        return HTMLResponse(_PLAIN_500, status_code=500)


#: Without styles or links that need the server: the public pages' visitors see it too.
_PLAIN_503 = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>服务暂时不可用</title>
<main style="max-width:32rem;margin:3rem auto;padding:0 1rem;font-family:sans-serif;line-height:1.6">
<h1 style="font-size:1.3rem">服务暂时不可用</h1>
<p>系统正在恢复，请稍等片刻：刷新本页，或返回上一页重新提交。</p></main>
</html>"""

_PLAIN_500 = """<!doctype html><html lang="zh-CN"><meta charset="utf-8">
<title>服务器内部错误</title><link rel="stylesheet" href="/static/app.css">
<main class="container"><div class="card"><h1>服务器内部错误</h1>
<p>请稍后重试；如果问题持续，请联系管理员。</p><p><a href="/">返回工作台</a></p></div></main>
</html>"""

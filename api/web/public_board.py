"""The public 公示 board (/b/{token}): no login, phone-first, printable, with its 意见箱.

A forged or truncated token is refused before any query; an unknown or revoked one gets the
same 404 page; a board past its end date says so (410). The page loads no asset (inline CSS,
an inline SVG QR code of its own address), needs no JavaScript, and is `noindex`.

The 意见箱 form needs no session and carries no CSRF token: it speaks for no one, so there is
no authority a forged post could borrow. Its body is read only up to `MAX_FORM` bytes (a 1 MB
post is refused with 413 after reading at most that much), then every post to a live board
counts against the address's hourly limit before its fields are checked.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import segno
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from api.clientaddr import client_address
from api.security import public
from api.web import public_docs as docs
from api.web import session as web
from states.board import messages, service
from states.board.content import board_content
from states.board.models import PublicBoard
from states.db import read_session, unit_of_work
from states.errors import InvalidInput, NotFound, RateLimited
from states.public_links import nonce_of
from states.survey.results import CHANNEL_LABELS, percent

router = APIRouter(tags=[docs.TAG])
#: The largest 意见箱 post read: 2,000 CJK characters percent-encoded are 18,000 bytes.
MAX_FORM = 24 * 1024
HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def public_url(request: Request, token: str) -> str:
    """The board's address as people reach it (`DANGJIAN_BASE_URL`, else this host)."""
    base = os.environ.get("DANGJIAN_BASE_URL", "").strip() or str(request.base_url)
    return base.rstrip("/") + "/b/" + token


@lru_cache(maxsize=1024)
def qr_svg(url: str, scale: int = 4) -> str:
    """An inline SVG QR code of `url` (no external asset); kept, as encoding takes ~25 ms."""
    return str(
        segno.make(url, error="m").svg_inline(
            scale=scale, border=2, omitsize=True, title="本页二维码"
        )
    )


def _page(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    response = web.templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(HEADERS)
    return response


def _error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
    """The site's error page, rendered without a session look-up (a public page has none)."""
    context: dict[str, Any] = {"actor": None, "nav": [], "flashes": [], "reasons": []}
    context["status"] = status
    context.update(title=title, message=message)
    return _page(request, "error.html", context, status_code=status)


def _missing(request: Request) -> HTMLResponse:
    """The 404 page, the same for an unknown, forged, truncated or revoked address."""
    return _error(request, 404, "页面不存在", "您要找的页面不存在，或不在您的管辖范围内。")


def _ended(request: Request, board: PublicBoard) -> HTMLResponse:
    return _page(request, "public_board_ended.html", {"board": board}, status_code=410)


def _board_page(
    request: Request,
    token: str,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    with read_session(request.app.state.engine) as s:
        try:
            found = service.by_token(s, token)
        except NotFound:
            return _missing(request)
        if found.ended:
            return _ended(request, found.board)
        content = board_content(s, found.board)
        s.expunge_all()  # keep what was read: the session's rollback would expire it
    url = public_url(request, token)
    context = {
        "board": found.board,
        "c": content,
        "url": url,
        "token": token,
        "qr": qr_svg(url),
        "form": form or {},
        "errors": errors or {},
        "sent": request.query_params.get("sent") == "1" and not errors,
        "channel_labels": CHANNEL_LABELS,
        "percent": percent,
        "max_message": messages.MAX_MESSAGE,
        "max_contact": messages.MAX_CONTACT,
    }
    return _page(request, "public_board.html", context, status_code=status_code)


@router.get(
    "/b/{token}",
    summary="公示栏（扫码打开）",
    response_class=HTMLResponse,
    responses=docs.page_responses(200, 404, 410, 503),
)
def board_page(token: str, request: Request, _: None = Depends(public)) -> Response:
    if nonce_of("board", token) is None:
        return _missing(request)  # before any query
    return _board_page(request, token)


async def _read_form(request: Request) -> dict[str, str] | None:
    """The posted fields, or None when the body is over `MAX_FORM` (stops reading there)."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM:
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    text = body.decode("utf-8", errors="replace")
    fields = parse_qs(text, keep_blank_values=True, max_num_fields=10)
    return {k: v[-1] for k, v in fields.items()}


def _too_large(request: Request) -> HTMLResponse:
    limit = messages.MAX_MESSAGE
    return _error(request, 413, "留言过长", f"留言不能超过 {limit} 字，请删减后重试。")


def _count(request: Request, token: str, address: str) -> PublicBoard | None:
    """Count the post against its address (its own transaction); the live board, or None."""
    with unit_of_work(request.app.state.engine) as s:
        found = service.by_token(s, token)
        if found.ended:
            return None
        messages.count_post(s, address)
        return found.board


def _store(request: Request, board: PublicBoard, checked: messages.MessageIn) -> None:
    with unit_of_work(request.app.state.engine) as s:
        messages.leave_message(s, board, checked)


def _accept(request: Request, token: str, address: str, form: dict[str, str]) -> Response:
    try:
        board = _count(request, token, address)
    except NotFound:
        return _missing(request)
    except RateLimited as exc:
        response = _error(request, 429, "留言过于频繁", exc.message)
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if board is None:
        with read_session(request.app.state.engine) as s:
            return _ended(request, service.by_token(s, token).board)
    try:
        checked = messages.check_message(form.get("message", ""), form.get("contact", ""))
    except InvalidInput as exc:
        errors = {str(d["field"]): str(d["message"]) for d in exc.details}
        return _board_page(request, token, form=form, errors=errors, status_code=422)
    _store(request, board, checked)
    return web.redirect(f"/b/{token}?sent=1#box")


@router.post(
    "/b/{token}",
    summary="意见箱留言",
    status_code=303,
    response_class=HTMLResponse,
    responses=docs.page_responses(404, 413, 422, 429, 503),
    openapi_extra=docs.form_body(
        {
            "message": {"type": "string", "maxLength": messages.MAX_MESSAGE},
            "contact": {"type": "string", "maxLength": messages.MAX_CONTACT},
        }
    ),
)
async def leave_message(token: str, request: Request, _: None = Depends(public)) -> Response:
    if nonce_of("board", token) is None:
        return _missing(request)  # before any query, before reading the body
    form = await _read_form(request)
    if form is None:
        return _too_large(request)
    address = client_address(request)
    return await run_in_threadpool(_accept, request, token, address, form)

"""Deadline calendars: the public feed `/calendar/{token}.ics` and its settings page.

* `/calendar/{token}.ics` – no login: the token is the secret. A forged or truncated token is
  refused before any query; an unknown or replaced one, or one of a deactivated user, gets the
  same 404. The feed answers `ETag` and 304 to a matching `If-None-Match`, so calendars that
  poll often cost a query and no download.
* `/account/calendar` – the caller's feed address (created on first visit) in a copy field,
  with a QR code for phones and a button that replaces it (the old address stops working).
"""

from __future__ import annotations

import hashlib
import os
from typing import Annotated

import segno
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import engine_of
from api.security import public
from api.web.session import csrf_protect, flash, not_found, page_actor, redirect, render
from states.calfeed import ics
from states.calfeed.service import deadlines, feed_owner, feed_token, reset_feed
from states.db import read_session, unit_of_work
from states.errors import NotFound
from states.public_links import nonce_of
from states.users import Actor, load_actor

router = APIRouter(include_in_schema=False)
SETTINGS_PAGE = "/account/calendar"
ICS_TYPE = "text/calendar; charset=utf-8"
FEED_HEADERS = {
    "Cache-Control": "private, no-cache",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def site_url(request: Request) -> str:
    """The site's address as people reach it (`DANGJIAN_BASE_URL`, else this host)."""
    base = os.environ.get("DANGJIAN_BASE_URL", "").strip() or str(request.base_url)
    return base.rstrip("/")


def feed_url(request: Request, token: str) -> str:
    """The full address of a feed."""
    return f"{site_url(request)}/calendar/{token}.ics"


def _feed(request: Request, token: str) -> bytes | None:
    """The feed's bytes, or None when the token opens no live feed."""
    with read_session(engine_of(request)) as s:
        user_id = feed_owner(s, token)
        if user_id is None:
            return None
        try:
            actor = load_actor(s, user_id)
        except NotFound:
            return None
        items = deadlines(s, actor)
    name = f"党建活动截止日期（{actor.display_name}）"
    return ics.feed_ics(items, name=name, base_url=site_url(request))


@router.get("/calendar/{token}.ics")
def calendar_feed(token: str, request: Request, _: None = Depends(public)) -> Response:
    """The personal deadline feed (iCalendar)."""
    if nonce_of("calendar", token) is None:
        return not_found(request)  # before any query
    body = _feed(request, token)
    if body is None:
        return not_found(request)
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    headers = {**FEED_HEADERS, "ETag": etag}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    headers["Content-Disposition"] = 'inline; filename="deadlines.ics"'
    return Response(body, media_type=ICS_TYPE, headers=headers)


def qr_svg(url: str) -> str:
    """An inline SVG QR code of `url` (no external asset)."""
    return str(segno.make(url, error="m").svg_inline(scale=4, border=2, title="订阅地址二维码"))


@router.get(SETTINGS_PAGE, response_class=HTMLResponse)
def calendar_settings(
    request: Request, actor: Annotated[Actor, Depends(page_actor)]
) -> HTMLResponse:
    """The caller's feed address, its QR code and the button that replaces it."""
    with unit_of_work(engine_of(request)) as s:
        token = feed_token(s, actor.user_id)
    url = feed_url(request, token)
    webcal = "webcal://" + url.split("://", 1)[-1]
    context = {"url": url, "webcal": webcal, "qr": qr_svg(url)}
    return render(request, "account_calendar.html", context)


@router.post(SETTINGS_PAGE + "/reset", dependencies=[Depends(csrf_protect)])
def calendar_reset(request: Request, actor: Annotated[Actor, Depends(page_actor)]) -> Response:
    """Replace the caller's feed address; the old one stops working at once."""
    with unit_of_work(engine_of(request)) as s:
        reset_feed(s, actor.user_id)
    flash(request, "已更换订阅地址；原地址已失效，请在手机或电脑日历中重新订阅")
    return redirect(SETTINGS_PAGE)

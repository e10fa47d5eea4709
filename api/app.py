"""The FastAPI application: JSON API under `/api/v1`, OpenAPI at `/docs`.

This module must not import Prefect: `dangjian serve` starts fast (see tests/test_api_app.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.engine import Engine
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import docs, errors, web
from api.security import access_of, describe_access, public
from api.v1 import (
    account,
    approvals_batch,
    attachments,
    auth,
    board,
    bulletins,
    calendar,
    campaigns,
    evidence,
    jobs,
    ledger,
    members,
    myruns,
    notifications,
    notify_settings,
    orgs,
    owed,
    requests,
    runs,
    supervision,
    survey,
    templates,
    users,
)
from states.db import get_engine

API = "/api/v1"
#: In the order routes are matched: the state changes first (each router's routes are tried in
#: turn, so the busiest paths should not wait behind every other route's pattern).
ROUTERS = (
    requests,
    runs,
    evidence,
    auth,
    account,
    orgs,
    templates,
    campaigns,
    approvals_batch,
    notifications,
    notify_settings,
    members,
    myruns,
    owed,
    attachments,
    board,
    survey,
    calendar,
    users,
    ledger,
    jobs,
    bulletins,
    supervision,
)
#: The site icon, drawn once with Pillow (a white star on a red square) and committed.
FAVICON = Path(web.__file__).parent / "static" / "favicon.ico"
ICON_CACHE = {"Cache-Control": "public, max-age=86400"}
#: Largest request body accepted; the organisation import has its own, larger limit.
MAX_BODY = 1024 * 1024
MAX_UPLOAD = 11 * 1024 * 1024

DESCRIPTION = """
基层党组织活动流程服务的 JSON 接口。

* 先 `POST /api/v1/auth/token` 取得令牌，再在请求头带上 `Authorization: Bearer <令牌>`。
* 不在本人管辖范围内的对象与不存在的对象一样，返回 404。
* 所有错误的格式相同：`{"code", "message", "details"}`，message 为中文。
* 改变状态的 POST 可带 `Idempotency-Key`：同一键、同一请求体重放第一次的响应（保留 24 小时）。
"""


class BodyLimit:
    """Refuse request bodies over a size limit with 413, before reading them into memory."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        big = scope["path"].endswith(("/orgs/import", "/members/import", "/commitments"))
        limit = MAX_UPLOAD if big else MAX_BODY
        if scope["path"].endswith("/attachments"):  # one file of 10 MB and its form
            limit = attachments.MAX_UPLOAD_BODY
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _too_large(send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        errors.error_body("too_large", f"请求内容过大（上限 {limit // 1024} KB）"),
        ensure_ascii=False,
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def route_access(route: APIRoute) -> Any:
    """Return the access a route declares through its dependencies (None if it declares none)."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call is not None and access_of(dep.call) is not None:
            return access_of(dep.call)
        stack.extend(dep.dependencies)
    return None


def create_app(engine: Engine | None = None) -> FastAPI:
    """Build the application on `engine` (default: the configured database)."""
    app = FastAPI(
        title="dangjian-flow 党建活动流程",
        version="0.1.0",
        description=DESCRIPTION,
        docs_url=None,  # api/docs.py serves /docs and /redoc without a CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    docs.install(app)
    app.state.engine = engine or get_engine()
    errors.install(app)
    web.install_first(app)  # the public survey's posts come in bursts: matched before the rest
    for module in ROUTERS:
        _document_access(module.router.routes)
        app.include_router(module.router)

    @app.get("/healthz", summary="健康检查", tags=["系统"])
    async def healthz(_: None = Depends(public)) -> dict[str, str]:
        """服务在运行即返回 ok。"""
        # On the event loop, not in the worker threads: busy threads must not fail the check.
        return {"status": "ok"}

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon(_: None = Depends(public)) -> FileResponse:
        """The site icon (a white star on red; api/web/static/favicon.ico, 16/32/48 px)."""
        return FileResponse(FAVICON, media_type="image/x-icon", headers=ICON_CACHE)

    # The pages (工作台 at `/`, log-in, runs, approvals, dashboards): same services, same reach.
    web.install(app)

    _document_access(app.router.routes)
    app.add_middleware(BodyLimit)
    return app


def _jsonable(access: Any) -> Any:
    return access if isinstance(access, str) else [r.value for r in access]


def _document_access(routes: list[BaseRoute]) -> None:
    """Publish each route's declared access in its description and as `x-access` (once)."""
    for route in routes:
        if not isinstance(route, APIRoute) or "x-access" in (route.openapi_extra or {}):
            continue
        access = route_access(route)
        if access is not None:
            route.description = (
                route.description or ""
            ) + f"\n\n**权限**：{describe_access(access)}"
            route.openapi_extra = {**(route.openapi_extra or {}), "x-access": _jsonable(access)}


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every path operation of the app, with its full path (included routers flattened)."""
    return [
        ctx.original_route
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.original_route, APIRoute)
    ]

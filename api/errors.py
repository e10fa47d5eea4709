"""One error shape for every failure: `{"code", "message", "details"}`, the message in Chinese."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from states.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthenticated,
)

log = logging.getLogger("dangjian.api")


class ErrorOut(BaseModel):
    """An error: a stable `code` for programs, a Chinese `message` for people, and `details`."""

    code: str
    message: str
    details: Any = None


STATUS: list[tuple[type[DomainError], int]] = [
    (Unauthenticated, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (TooLarge, 413),  # before InvalidInput, its base
    (InvalidInput, 422),
    (RateLimited, 429),
]

HTTP_MESSAGES = {
    400: ("bad_request", "请求格式有误"),
    401: ("unauthenticated", "请先登录"),
    403: ("forbidden", "无权执行此操作"),
    404: ("not_found", "请求的地址不存在"),
    405: ("method_not_allowed", "不支持该请求方法"),
    406: ("not_acceptable", "不支持请求的返回格式"),
    413: ("too_large", "请求内容过大"),
    415: ("unsupported_media_type", "不支持的内容类型"),
}

# Chinese wording for the validation errors people meet most.
VALIDATION_MESSAGES = {
    "missing": "必填",
    "extra_forbidden": "不允许的字段",
    "int_parsing": "须为整数",
    "int_type": "须为整数",
    "bool_parsing": "须为 true 或 false",
    "bool_type": "须为 true 或 false",
    "string_type": "须为文本",
    "string_too_short": "不能为空或过短",
    "string_too_long": "过长",
    "greater_than_equal": "数值过小",
    "less_than_equal": "数值过大",
    "greater_than": "数值过小",
    "less_than": "数值过大",
    "date_from_datetime_parsing": "须为日期（YYYY-MM-DD）",
    "date_parsing": "须为日期（YYYY-MM-DD）",
    "date_type": "须为日期（YYYY-MM-DD）",
    "datetime_parsing": "须为带时区的时间（如 2026-12-01T09:00+08:00）",
    "datetime_type": "须为带时区的时间（如 2026-12-01T09:00+08:00）",
    "timezone_aware": "须带时区（如 +08:00）",
    "literal_error": "取值不在允许范围内",
    "enum": "取值不在允许范围内",
    "union_tag_invalid": "类型不在允许范围内",
    "union_tag_not_found": "缺少类型字段",
    "json_invalid": "不是合法的 JSON",
    "model_attributes_type": "须为对象",
    "dict_type": "须为对象",
    "list_type": "须为列表",
    "model_type": "须为对象",
    "too_long": "条目过多",
    "too_short": "条目过少",
    "value_error": "取值有误",
    "string_pattern_mismatch": "格式不正确",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc]
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:] or parts
    return ".".join(parts)


def validation_details(errors: list[Any]) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        kind = str(err.get("type", ""))
        msg = VALIDATION_MESSAGES.get(kind)
        if kind == "value_error" and err.get("msg"):
            msg = str(err["msg"]).removeprefix("Value error, ")
        out.append(
            {
                "field": _field(tuple(err.get("loc", ()))),
                "message": msg or str(err.get("msg", "")),
                "type": kind,
            }
        )
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the one error shape."""

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        status = next((s for cls, s in STATUS if isinstance(exc, cls)), 400)
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = "Bearer"
        details = exc.details
        return JSONResponse(
            error_body(exc.code, exc.message, details), status_code=status, headers=headers
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = validation_details(list(exc.errors()))
        fields = "、".join(dict.fromkeys(d["field"] for d in details if d["field"]))
        message = f"请求内容有误：{fields}" if fields else "请求内容有误"
        return JSONResponse(error_body("invalid_input", message, details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI answers 400 for a body it cannot parse (not UTF-8, nested too deep, broken
            # multipart); to the client that is invalid input like any other: 422, one shape.
            return JSONResponse(
                error_body(
                    "invalid_input",
                    "请求内容无法解析（须为 UTF-8 编码的 JSON 或完整的表单）",
                    [{"field": "body", "message": "无法解析", "type": "body_unparsable"}],
                ),
                status_code=422,
            )
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; name every route's.
            headers["Allow"] = ", ".join(allowed_methods(request))
        code, message = HTTP_MESSAGES.get(exc.status_code, ("error", "请求失败"))
        if isinstance(exc.detail, dict) and "code" in exc.detail:
            return JSONResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=headers)

    @app.exception_handler(OperationalError)
    async def database_busy(_: Request, exc: OperationalError) -> JSONResponse:
        if "locked" in str(exc.orig).lower() or "could not serialize" in str(exc.orig).lower():
            return JSONResponse(
                error_body("busy", "系统繁忙，请稍后重试"),
                status_code=503,
                headers={"Retry-After": "1"},
            )
        log.exception("database error")
        return JSONResponse(error_body("database_error", "数据库暂时不可用，请稍后重试"), 503)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(error_body("internal_error", "服务器内部错误，请联系管理员"), 500)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers on this request's path."""
    methods: set[str] = set()
    for ctx in iter_route_contexts(request.app.routes):
        route = ctx.original_route
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches({**request.scope, "method": next(iter(route.methods))})
            if match == Match.FULL:
                methods |= route.methods
    return sorted(methods)


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route may return."""
    text = {
        401: "未登录或令牌无效",
        403: "无权执行此操作",
        404: "对象不存在或不在您的管辖范围内",
        409: "被业务规则阻止（附规则与原因）",
        413: "请求内容过大",
        422: "请求内容有误（附字段）",
        429: "请求过于频繁（见 Retry-After）",
    }
    return {c: {"model": ErrorOut, "description": text[c]} for c in codes}

"""How the public pages (no login) appear in `/openapi.json`: HTML answers, form bodies.

The public survey (`/s/{token}`) and the 公示 board (`/b/{token}`) are pages for people with a
phone, not JSON endpoints, but their addresses, statuses and form fields are a contract that
printed QR codes and integrators rely on, so they are documented beside the API.
"""

from __future__ import annotations

from typing import Any

TAG = "公开页面（无需登录）"

_TEXT = {
    200: "页面（HTML）",
    404: "地址不存在、被伪造、截断或已撤销（统一的 404 页面）",
    409: "编码已用过，或本设备已评议过",
    410: "已结束（问卷结束后显示公开的汇总结果）",
    413: "提交内容过大（按 Content-Length 拒绝，不读取内容）",
    422: "填写有误（重新显示表单并指出各项问题）",
    429: "同一网络地址提交过于频繁（见 Retry-After）",
    503: "数据库暂时不可用",
}


def page_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries: each status answers an HTML page."""
    return {c: {"description": _TEXT[c], "content": {"text/html": {}}} for c in codes}


def form_body(fields: dict[str, dict[str, Any]], pattern: dict[str, Any] | None = None) -> Any:
    """`openapi_extra` for a route that reads an urlencoded form itself."""
    schema: dict[str, Any] = {"type": "object", "properties": fields}
    if pattern:
        schema["patternProperties"] = pattern
    return {
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": schema}},
        }
    }

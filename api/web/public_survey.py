"""The public survey (群众评议), no login: `/s/<token>` shows the form, a POST answers it.

Replies: 200 with a receipt code; 404 for an unknown, forged, truncated or retired address (one
page for all); 409 for a used code or a device that already answered; 410 once the survey has
closed (with the published results, from 5 answers up); 413 for a body over `MAX_FORM`, refused
from its Content-Length before anything is read; 422 for a bad form (the form again, each problem
named); 429 when one network address posts too often.

The pages load nothing from elsewhere (inline CSS, inline SVG), need no JavaScript, fit a
375-px phone, and are kept out of search engines (`noindex` in the page and the header). The
open link's one-answer-per-device rests on a signed, HttpOnly cookie (`DEVICE_COOKIE`).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.clientaddr import client_address
from api.security import public
from api.web import public_docs as docs
from api.web.session import templates
from states.db import read_session, retry_dead_connection, unit_of_work
from states.errors import InvalidInput
from states.public_links import nonce_of, token_for
from states.survey import answers as answering
from states.survey import fast, keys
from states.survey.answers import Refused, Target
from states.survey.forms import MAX_COMMENT, Answer, check_answer, field_name
from states.survey.models import Survey
from states.survey.results import CHANNEL_LABELS, RATINGS, percent, survey_summary
from states.timeutil import format_local

router = APIRouter(tags=[docs.TAG], dependencies=[Depends(public)])

DEVICE_COOKIE = "dj_device"
DEVICE_MAX_AGE = 400 * 24 * 3600
#: The largest answer form accepted: 500 characters of comment are at most ~14 KB encoded.
MAX_FORM = 16 * 1024
HEADERS = {
    "X-Robots-Tag": "noindex, nofollow",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
}
TITLES = {
    404: "页面不存在",
    409: "未能提交",
    410: "评议已结束",
    413: "内容过长",
    422: "请检查填写内容",
    429: "提交过于频繁",
}


def _page(status: int, **context: Any) -> HTMLResponse:
    context.setdefault("title", TITLES.get(status, "群众评议"))
    body = templates.get_template("public_survey.html").render(
        status=status, ratings=RATINGS, max_comment=MAX_COMMENT, **context
    )
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _not_found() -> HTMLResponse:
    return _page(
        404, mode="message", message="您打开的问卷地址不存在或已失效，请核对二维码或链接。"
    )


def _form_context(target: Target, request: Request) -> dict[str, Any]:
    questions = [
        {"name": field_name(i), "label": q["label"]} for i, q in enumerate(target.questions)
    ]
    return {
        "mode": "form",
        "questions": questions,
        "action": request.url.path,
        "open_link": target.open_link,
        "has_codes": target.code_count > 0,
    }


def _closed(request: Request, target: Target) -> HTMLResponse:
    with read_session(request.app.state.engine) as s:
        summary = survey_summary(s, target.id)
    return _page(
        410,
        mode="closed",
        summary=summary,
        percent=percent,
        channels=CHANNEL_LABELS,
        closed_text=format_local(summary.closed_at) if summary else "",
    )


def _target(request: Request, token: str) -> Target | None:
    nonce = nonce_of("survey", token)
    if nonce is None:
        return None
    with read_session(request.app.state.engine) as s:
        return answering.load_target(s, nonce)


def _with_device(request: Request, response: HTMLResponse, target: Target) -> HTMLResponse:
    if target.open_link and keys.device_of(request.cookies.get(DEVICE_COOKIE)) is None:
        _, cookie = keys.new_device()
        _set_device(request, response, cookie)
    return response


def _set_device(request: Request, response: HTMLResponse, cookie: str) -> None:
    response.set_cookie(
        DEVICE_COOKIE,
        cookie,
        max_age=DEVICE_MAX_AGE,
        path="/s/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


@router.get(
    "/s/{token}",
    summary="群众评议问卷（扫码打开）",
    response_class=HTMLResponse,
    responses=docs.page_responses(200, 404, 410, 503),
)
def survey_form(token: str, request: Request) -> HTMLResponse:
    target = _target(request, token)
    if target is None:
        return _not_found()
    if target.closed:
        return _closed(request, target)
    code = request.query_params.get("code", "")[:20]
    context = _form_context(target, request)
    response = _page(200, values={"code": code}, errors={}, **context)
    return _with_device(request, response, target)


async def _read_form(request: Request) -> dict[str, str] | None:
    """The posted form's fields (first value each), or None when the body is over `MAX_FORM`."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_FORM:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    text = body.decode("utf-8", errors="replace")
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items() if v}


@router.post(
    "/s/{token}",
    summary="提交评议（一次性编码或公开链接）",
    response_class=HTMLResponse,
    responses=docs.page_responses(200, 404, 409, 410, 413, 422, 429, 503),
    openapi_extra=docs.form_body(
        {
            "code": {"type": "string", "description": "评议卡上的一次性编码（公开链接可不填）"},
            "comment": {"type": "string", "maxLength": MAX_COMMENT, "description": "意见建议"},
        },
        {"^q_[0-9]+$": {"type": "string", "enum": ["满意", "基本满意", "不满意"]}},
    ),
)
async def survey_answer(token: str, request: Request) -> HTMLResponse:
    """表单字段：每题一项 `q_1`、`q_2`……（满意 / 基本满意 / 不满意），可选 `comment`；用评议卡
    时另带 `code`。成功返回带回执码的页面。"""
    fields = await _read_form(request)
    if fields is None:
        return _page(
            413, mode="message", message=f"提交的内容过长（意见建议不超过 {MAX_COMMENT} 字）。"
        )
    nonce = nonce_of("survey", token)
    if nonce is None:
        return _not_found()
    return await run_in_threadpool(_answer, request, nonce, fields)


def _answer(request: Request, nonce: str, fields: dict[str, str]) -> HTMLResponse:
    device = keys.device_of(request.cookies.get(DEVICE_COOKIE))
    fresh_cookie = None
    if device is None:
        device, fresh_cookie = keys.new_device()
    target, outcome = _fast_answer(request, nonce, fields, device)
    if outcome is None:
        target, outcome = _commit_answer(request, nonce, fields, device)
    if target is None:
        return _not_found()
    if isinstance(outcome, Refused):
        return _refused(request, target, outcome, fields)
    response = _page(200, mode="receipt", receipt=outcome, action=request.url.path)
    if fresh_cookie and target.open_link and not fields.get("code", "").strip():
        _set_device(request, response, fresh_cookie)
    return response


def _fast_answer(
    request: Request, nonce: str, fields: dict[str, str], device: str
) -> tuple[Target | None, str | Refused | None]:
    """On PostgreSQL, a valid answer to an open survey in one statement (`states.survey.fast`);
    (target, None) when it must take the ordinary path (`_commit_answer`)."""
    engine = request.app.state.engine
    if engine.dialect.name != "postgresql":
        return None, None
    target = retry_dead_connection(lambda: fast.targets.get(engine, nonce))
    if target is None:
        return None, None
    checked = _checked(target, fields)
    if isinstance(checked, Refused):
        return target, None
    code = fields.get("code")
    try:
        address = client_address(request)
        receipt = retry_dead_connection(  # a dropped pooled connection: once more on a fresh one
            lambda: fast.answer(engine, target, checked, address=address, code=code, device=device)
        )
    except Refused as exc:
        return target, exc
    except IntegrityError:  # the same device, twice at once: the second insert loses
        return target, Refused(409, "本设备已经提交过评议，每台设备只能评议一次")
    return target, receipt


def _commit_answer(
    request: Request, nonce: str, fields: dict[str, str], device: str
) -> tuple[Target | None, str | Refused]:
    """(survey, receipt) once committed, or (survey, refusal) with the address's hit committed."""
    try:
        with unit_of_work(request.app.state.engine) as s:
            target = answering.load_target(s, nonce)
            if target is None:
                return None, ""
            try:
                return target, answering.answer_public(
                    s,
                    target,
                    _checked(target, fields),
                    address=client_address(request),
                    code=fields.get("code"),
                    device=device,
                )
            except Refused as exc:
                return target, exc
    except IntegrityError:  # the same device, twice at once: the second insert loses
        return target, Refused(409, "本设备已经提交过评议，每台设备只能评议一次")


def _checked(target: Target, fields: dict[str, str]) -> Answer | Refused:
    try:
        return check_answer(target.questions, fields)
    except InvalidInput as exc:
        return Refused(422, exc.message, details=list(exc.details or []))


def _refused(
    request: Request, target: Target, exc: Refused, fields: dict[str, str]
) -> HTMLResponse:
    if exc.status == 410:
        return _closed(request, target)
    if exc.status == 422:
        errors = {d["field"]: d["message"] for d in exc.details}
        context = _form_context(target, request)
        return _page(422, values=fields, errors=errors, message=exc.message, **context)
    response = _page(exc.status, mode="message", message=exc.message)
    if exc.status == 429:
        response.headers["Retry-After"] = str(answering.WINDOW)
    return response


@router.get(
    "/s/{token}/check",
    summary="用回执码查询评议是否计入",
    response_class=HTMLResponse,
    responses=docs.page_responses(200, 404, 503),
)
def check_receipt(token: str, request: Request) -> HTMLResponse:
    target = _target(request, token)
    if target is None:
        return _not_found()
    receipt = request.query_params.get("receipt", "")[:32]
    with read_session(request.app.state.engine) as s:
        found = answering.check_receipt(s, target, receipt) if receipt else None
    status = 200 if found or not receipt else 404
    return _page(
        status,
        title="查询评议是否计入",
        mode="check",
        receipt=receipt,
        found=found,
        channel=CHANNEL_LABELS.get(found.channel, "") if found else "",
        at=format_local(found.at) if found else "",
        back=f"/s/{token}",
    )


def survey_path(survey: Survey) -> str:
    """The public path of a survey (`/s/<token>`)."""
    return f"/s/{token_for('survey', survey.nonce)}"

"""The staff page of a run's 群众评议 survey (/runs/{id}/survey): open a survey, see its results,
close it, print its code cards (the one reveal of the codes), enter paper questionnaires, and
hide an abusive comment with a reason.

Every write goes through `states.survey.service`, as the JSON API does (`api/v1/survey.py`), in
one `unit_of_work`; a rule that blocks it is shown on the page and nothing is written.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from api.deps import IdPath, engine_of
from api.v1.survey import form_url
from api.web import session as web
from states.db import read_session, unit_of_work
from states.errors import Conflict, DomainError, Forbidden, InvalidInput
from states.run_core import acting_as, load_run
from states.survey import service
from states.survey.cards import card_url, cards_pdf, qr_svg
from states.survey.forms import check_answer, field_name
from states.survey.results import CHANNEL_LABELS, MIN_PUBLISHED, RATINGS, percent, results
from states.timeutil import format_local
from states.users import Actor

router = APIRouter(include_in_schema=False)
BLOCKING = (InvalidInput, Conflict, Forbidden)


def _survey_view(request: Request, s: Any, survey: Any) -> dict[str, Any]:
    res = results(s, survey)
    return {
        "survey": survey,
        "res": res,
        "form_url": form_url(request, survey),
        "rate": percent(res.rate),
        "opened": format_local(survey.opened_at),
        "closed": format_local(survey.closed_at) if survey.closed_at else "",
        "fields": [field_name(i) for i in range(len(survey.questions))],
    }


def _page(request: Request, actor: Actor, run_id: int, status: int = 200, **extra: Any) -> Response:
    with read_session(engine_of(request)) as s:
        ctx = load_run(s, run_id, actor)
        try:
            acting_as(ctx, actor)
            may_act = True
        except Forbidden:
            may_act = False
        surveys = [_survey_view(request, s, v) for v in service.surveys_of(s, run_id)]
        stage = ctx.tpl.stage(ctx.run.stage)
        context = {
            "run": ctx.run,
            "org": ctx.org,
            "campaign": ctx.campaign,
            "stage_name": stage.name,
            "surveys": surveys,
            "may_act": may_act,
            "has_open": any(v["survey"].closed_at is None for v in surveys),
            "ratings": RATINGS,
            "channels": CHANNEL_LABELS,
            "min_published": MIN_PUBLISHED,
            "max_codes": service.MAX_CODES,
            "actor_id": actor.user_id,
            "deadline": format_local(ctx.run.deadline) if ctx.run.deadline else "无期限",
            **extra,
        }
        return web.render(request, "survey.html", context, status)


@router.get("/runs/{run_id}/survey")
def survey_page(
    run_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    return _page(request, actor, run_id)


def _blocked(request: Request, actor: Actor, run_id: int, exc: DomainError) -> Response:
    status = 422 if isinstance(exc, InvalidInput) else 403 if isinstance(exc, Forbidden) else 409
    return _page(request, actor, run_id, status, error=exc.message)


@router.post("/runs/{run_id}/survey", dependencies=[Depends(web.csrf_protect)])
async def open_survey(
    run_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    form = await web.form_fields(request)
    codes_text = form.get("codes", "0").strip() or "0"
    try:
        codes = int(codes_text) if codes_text.isdigit() else -1
        with unit_of_work(engine_of(request)) as s:
            service.open_survey(
                s, run_id=run_id, actor=actor, codes=codes, open_link=bool(form.get("open_link"))
            )
    except BLOCKING as exc:
        return _blocked(request, actor, run_id, exc)
    web.flash(request, "问卷已发起：请打印编码卡片（只能领取一次），或张贴公开链接")
    return web.redirect(f"/runs/{run_id}/survey")


def _run_of_survey(request: Request, actor: Actor, survey_id: int) -> int:
    with read_session(engine_of(request)) as s:
        survey, _ = service.load_survey(s, survey_id, actor)
        return survey.run_id


@router.post("/surveys/{survey_id}/close", dependencies=[Depends(web.csrf_protect)])
def close_survey(
    survey_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    run_id = _run_of_survey(request, actor, survey_id)
    try:
        with unit_of_work(engine_of(request)) as s:
            service.close_survey(s, survey_id=survey_id, actor=actor)
    except BLOCKING as exc:
        return _blocked(request, actor, run_id, exc)
    web.flash(request, "问卷已结束；为限流保存的网络地址摘要已删除")
    return web.redirect(f"/runs/{run_id}/survey")


@router.post("/surveys/{survey_id}/paper", dependencies=[Depends(web.csrf_protect)])
async def enter_paper(
    survey_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    form = await web.form_fields(request)
    run_id = _run_of_survey(request, actor, survey_id)
    try:
        with unit_of_work(engine_of(request)) as s:
            survey, _ = service.load_survey(s, survey_id, actor)
            answer = check_answer(survey.questions, form)
            service.enter_paper_answer(s, survey_id=survey_id, actor=actor, answer=answer)
    except BLOCKING as exc:
        return _blocked(request, actor, run_id, exc)
    web.flash(request, "已录入一份纸质问卷")
    return web.redirect(f"/runs/{run_id}/survey")


@router.post("/survey-answers/{answer_id}/hide", dependencies=[Depends(web.csrf_protect)])
async def hide_comment(
    answer_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    form = await web.form_fields(request)
    with read_session(engine_of(request)) as s:
        run_id = service.run_of_answer(s, answer_id, actor)
    try:
        with unit_of_work(engine_of(request)) as s:
            service.hide_comment(s, answer_id=answer_id, actor=actor, reason=form.get("reason", ""))
    except BLOCKING as exc:
        return _blocked(request, actor, run_id, exc)
    web.flash(request, "该意见已隐藏（公开页面只显示隐藏条数）")
    return web.redirect(f"/runs/{run_id}/survey")


def _reveal(
    request: Request, actor: Actor, survey_id: int
) -> tuple[Any, list[str], str] | Response:
    run_id = _run_of_survey(request, actor, survey_id)
    try:
        with unit_of_work(engine_of(request)) as s:
            survey, codes = service.reveal_codes(s, survey_id=survey_id, actor=actor)
            ctx = load_run(s, run_id, actor)
            return survey, codes, f"{ctx.org.name} {ctx.tpl.name}"
    except BLOCKING as exc:
        return _blocked(request, actor, run_id, exc)


@router.get("/surveys/{survey_id}/cards.pdf")
def cards_as_pdf(
    survey_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    """The code cards as a PDF: the one reveal of the codes, like the print page."""
    revealed = _reveal(request, actor, survey_id)
    if isinstance(revealed, Response):
        return revealed
    survey, codes, title = revealed
    pdf = cards_pdf(title=f"{title} 群众评议卡", form_url=form_url(request, survey), codes=codes)
    headers = {
        "Content-Disposition": f'attachment; filename="survey-{survey_id}-codes.pdf"',
        "Cache-Control": "no-store",
    }
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.get("/surveys/{survey_id}/cards")
def print_cards(
    survey_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    """The print page of the code cards: the one reveal of the codes (see api/v1/survey.py)."""
    revealed = _reveal(request, actor, survey_id)
    if isinstance(revealed, Response):
        return revealed
    survey, codes, title = revealed
    url = form_url(request, survey)
    cards = [{"code": c, "svg": qr_svg(card_url(url, c))} for c in codes]
    response: HTMLResponse = web.render(
        request, "survey_cards.html", {"title": title, "cards": cards, "form_url": url}
    )
    return response

"""群众评议 surveys over JSON: open one on a run, read its results, close it, take its codes once.

The one-time codes exist in plain text exactly once (the database keeps keyed hashes): the first
of `GET /surveys/{id}/codes` (JSON), `GET /surveys/{id}/codes.pdf` (printable QR cards) or the
print page `/surveys/{id}/cards` makes them and gives them to the opener; every later call, of
any of the three, is 409 with the rule `codes_shown_once`. A lost sheet is replaced by closing
the survey and opening a new one.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import Idem, IdPath, idempotency_key, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from states.db import unit_of_work
from states.public_links import token_for
from states.run_core import load_run
from states.survey import service
from states.survey.cards import card_url, cards_pdf
from states.survey.forms import check_answer
from states.survey.models import Survey
from states.survey.results import CHANNEL_LABELS, Results, percent, publish, results
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["群众评议"])


class SurveyIn(S.In):
    codes: int = Field(ge=0, le=service.MAX_CODES, description="一次性编码张数（0–500）")
    open_link: bool = Field(default=False, description="是否同时开放公开链接（每台设备一份）")


class SurveyOpened(S.Out):
    id: int
    open_url: str | None = Field(description="公开链接（未开放时为 null）")
    form_url: str = Field(description="问卷地址（凭编码作答时也用它）")
    codes_url: str | None = Field(description="领取编码的地址（只能领取一次；无编码时为 null）")


class QuestionOut(S.Out):
    key: str
    label: str
    counts: dict[str, int]
    rate: float | None = Field(description="满意率：（满意＋基本满意）÷ 作答数")


class CommentOut(S.Out):
    answer_id: int
    text: str
    channel: str
    at: S.LocalTime
    hidden_reason: str | None


class SurveyOut(S.Out):
    id: int
    stage: str
    status: str = Field(description="open 进行中 / closed 已结束")
    open_link: bool
    code_count: int
    codes_taken: bool
    form_url: str
    opened_at: S.LocalTime
    closed_at: S.LocalTime | None
    answers: int
    rate: float | None
    rate_text: str
    by_channel: dict[str, int] = Field(description="code 编码、link 公开链接、paper 纸质录入")
    questions: list[QuestionOut]
    comments: list[CommentOut]
    hidden: int
    published: bool = Field(description="是否已向群众公布（结束且不少于 5 份）")


class SurveysOut(S.Out):
    items: list[SurveyOut]


class CodesOut(S.Out):
    id: int
    form_url: str
    codes: list[str]
    urls: list[str] = Field(description="每个编码的扫码地址（与 codes 一一对应）")


class PaperIn(S.In):
    answers: dict[str, str] = Field(description="q_1、q_2……：满意 / 基本满意 / 不满意")
    comment: str | None = Field(default=None, max_length=2000)


class PaperOut(S.Out):
    answer_id: int
    receipt: str


class HideIn(S.In):
    reason: str = Field(min_length=1, max_length=service.MAX_REASON)


def form_url(request: Request, survey: Survey) -> str:
    """The survey's public address on this server."""
    return str(request.base_url).rstrip("/") + f"/s/{token_for('survey', survey.nonce)}"


def _survey_out(request: Request, survey: Survey, res: Results) -> SurveyOut:
    return SurveyOut(
        id=survey.id or 0,
        stage=survey.stage,
        status="closed" if survey.closed_at else "open",
        open_link=survey.open_link,
        code_count=survey.code_count,
        codes_taken=survey.codes_shown_at is not None,
        form_url=form_url(request, survey),
        opened_at=survey.opened_at,
        closed_at=survey.closed_at,
        answers=res.answers,
        rate=res.rate,
        rate_text=percent(res.rate),
        by_channel=res.by_channel,
        questions=[
            QuestionOut(key=q.key, label=q.label, counts=q.counts, rate=q.rate)
            for q in res.questions
        ],
        comments=[CommentOut.model_validate(c, from_attributes=True) for c in res.comments],
        hidden=res.hidden,
        published=publish(res) is not None,
    )


@router.post(
    "/runs/{run_id}/survey",
    summary="发起群众评议问卷（一次性编码与/或公开链接）",
    status_code=201,
    response_model=SurveyOpened,
    responses=responses(401, 403, 404, 409, 422),
)
def open_survey(
    run_id: IdPath,
    body: SurveyIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """须为本支部书记或上级党委委员；当前阶段须计入群众评议表，且没有进行中的问卷（否则 409）。
    编码 1–500 张（只开公开链接时可为 0）。编码在第一次领取时生成，只给发起人一次。"""

    def change(s: Session, actor: Actor) -> SurveyOpened:
        survey = service.open_survey(
            s, run_id=run_id, actor=actor, codes=body.codes, open_link=body.open_link
        )
        url = form_url(request, survey)
        codes_url = f"/api/v1/surveys/{survey.id}/codes" if survey.code_count else None
        return SurveyOpened(
            id=survey.id or 0,
            open_url=url if survey.open_link else None,
            form_url=url,
            codes_url=codes_url,
        )

    return write(request, who, idem, 201, change)


@router.get(
    "/runs/{run_id}/survey",
    summary="群众评议结果：各题计数、满意率、各渠道份数、意见",
    response_model=SurveysOut,
    responses=responses(401, 404, 422),
)
def survey_results(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
) -> SurveysOut:
    """本进度的全部问卷，最新的在前。工作人员随时可见全部计数与意见（已隐藏的注明理由）；
    published 表示是否已向群众公布（问卷结束且不少于 5 份）。"""
    load_run(s, run_id, actor)
    items = [_survey_out(request, v, results(s, v)) for v in service.surveys_of(s, run_id)]
    return SurveysOut(items=items)


@router.post(
    "/surveys/{survey_id}/close",
    summary="结束问卷",
    response_model=SurveyOut,
    responses=responses(401, 403, 404, 409, 422),
)
def close_survey(
    survey_id: IdPath,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """须为本支部书记或上级党委委员。结束后不再接受作答，并删除为限流保存的网络地址摘要。"""

    def change(s: Session, actor: Actor) -> SurveyOut:
        survey = service.close_survey(s, survey_id=survey_id, actor=actor)
        return _survey_out(request, survey, results(s, survey))

    return write(request, who, idem, 200, change)


def _reveal(request: Request, survey_id: int, actor: Actor) -> tuple[Survey, list[str], str]:
    with unit_of_work(request.app.state.engine) as s:
        survey, codes = service.reveal_codes(s, survey_id=survey_id, actor=actor)
        ctx = load_run(s, survey.run_id, actor)
        title = f"{ctx.org.name} {ctx.tpl.name} 群众评议卡"
    return survey, codes, title


@router.get(
    "/surveys/{survey_id}/codes",
    summary="领取一次性编码（只给发起人一次）",
    response_model=CodesOut,
    responses=responses(401, 403, 404, 409, 422),
)
def take_codes(
    survey_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> CodesOut:
    """编码只以明文出现这一次（库中只存其摘要）：本接口、codes.pdf 与打印页三者中第一次调用的
    那一个给出编码，之后任何一个都返回 409（规则 codes_shown_once）。遗失时请结束问卷后重新发起。"""
    survey, codes, _ = _reveal(request, survey_id, actor)
    url = form_url(request, survey)
    return CodesOut(
        id=survey.id or 0, form_url=url, codes=codes, urls=[card_url(url, c) for c in codes]
    )


@router.get(
    "/surveys/{survey_id}/codes.pdf",
    summary="领取一次性编码的二维码卡片（PDF，只给发起人一次）",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "A4，每页 12 张卡片"},
        **responses(401, 403, 404, 409, 422),
    },
)
def take_codes_pdf(
    survey_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> Response:
    """与 codes 相同，只能领取一次（见上）；每张卡片有二维码（扫码即填好编码）和编码本身。"""
    survey, codes, title = _reveal(request, survey_id, actor)
    pdf = cards_pdf(title=title, form_url=form_url(request, survey), codes=codes)
    name = f"survey-{survey.id}-codes.pdf"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"}
    return Response(pdf, media_type="application/pdf", headers=headers)


@router.post(
    "/surveys/{survey_id}/paper",
    summary="录入纸质问卷（记为纸质录入）",
    status_code=201,
    response_model=PaperOut,
    responses=responses(401, 403, 404, 409, 422),
)
def enter_paper(
    survey_id: IdPath,
    body: PaperIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """须为本支部书记或上级党委委员；问卷结束后 409。各题与网上问卷相同（q_1 为总体评价）。"""

    def change(s: Session, actor: Actor) -> PaperOut:
        survey, _ = service.load_survey(s, survey_id, actor)
        fields = {**body.answers, "comment": body.comment or ""}
        answer = check_answer(survey.questions, fields)
        answer_id, receipt = service.enter_paper_answer(
            s, survey_id=survey_id, actor=actor, answer=answer
        )
        return PaperOut(answer_id=answer_id, receipt=receipt)

    return write(request, who, idem, 201, change)


@router.post(
    "/survey-answers/{answer_id}/hide",
    summary="隐藏一条不当意见（须写理由，记入审计；公布隐藏条数）",
    response_model=CommentOut,
    responses=responses(401, 403, 404, 409, 422),
)
def hide_comment(
    answer_id: IdPath,
    body: HideIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """须为本支部书记或上级党委委员。隐藏后公开页面不再显示该意见，只显示隐藏条数。"""

    def change(s: Session, actor: Actor) -> CommentOut:
        row = service.hide_comment(s, answer_id=answer_id, actor=actor, reason=body.reason)
        at: datetime = row.created_at
        return CommentOut(
            answer_id=row.id or 0,
            text=row.comment or "",
            channel=CHANNEL_LABELS.get(row.channel, row.channel),
            at=at,
            hidden_reason=row.comment_hidden_reason,
        )

    return write(request, who, idem, 200, change)

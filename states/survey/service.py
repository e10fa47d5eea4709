"""Staff side of a survey: open it on a run's stage, reveal its codes once, close it (by hand, or
at the stage deadline by the sweep), hide an abusive comment, and read it within reach.

Opening and closing, paper entries and hidden comments are events on the run's audit stream.
Closing drops the salted address hashes and the salt: from then on nothing of the respondents'
networks is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, update
from sqlmodel import Session, col, select

from states import audit
from states.catalog import AppraisalCount, Template
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import Run
from states.public_links import new_nonce
from states.run_core import RunContext, acting_as, load_run
from states.survey import keys
from states.survey.answers import Refused, Target, enter_paper, load_target
from states.survey.forms import Answer
from states.survey.models import Survey, SurveyAnswer, SurveyCode, SurveyHit
from states.timeutil import utcnow
from states.users import Actor

MAX_CODES = 500
MAX_REASON = 200
OVERALL = "overall"


@dataclass(frozen=True)
class Opened:
    """A survey just opened."""

    survey: Survey


def questions_for(tpl: Template, org_name: str) -> list[dict[str, Any]]:
    """The questions of a survey: an overall rating, then one per template heading."""
    out = [{"key": OVERALL, "label": f"对{org_name}{tpl.name}工作的总体评价"}]
    out += [{"key": f"h{i + 1}", "label": h} for i, h in enumerate(tpl.headings)]
    return out


def _log(session: Session, run_id: int, action: str, actor_id: int | None, **data: Any) -> None:
    audit.append(
        session, stream=f"run:{run_id}", action=action, actor_id=actor_id, data=data, run_id=run_id
    )


def _check_stage(ctx: RunContext) -> None:
    if ctx.run.completed_at is not None:
        raise Conflict("该创建进度已完成，不能再发起评议", details={"rule": "run_completed"})
    stage = ctx.tpl.stage(ctx.run.stage)
    if not any(isinstance(r, AppraisalCount) for r in stage.requirements):
        raise Conflict(
            f"当前阶段“{stage.name}”不需要群众评议，不能发起问卷",
            details={"rule": "stage_counts_no_appraisals", "stage": ctx.run.stage},
        )


def _check_none_open(session: Session, run_id: int) -> None:
    found = session.execute(
        select(Survey.id).where(Survey.run_id == run_id, col(Survey.closed_at).is_(None))
    ).first()
    if found is not None:
        raise Conflict(
            "本创建进度已有进行中的问卷，请先结束它",
            details={"rule": "survey_already_open", "survey_id": found[0]},
        )


def _check_counts(codes: int, open_link: bool) -> None:
    if not 0 <= codes <= MAX_CODES or (codes == 0 and not open_link):
        message = f"编码数量须在 1 到 {MAX_CODES} 之间（只用公开链接时可为 0）"
        raise InvalidInput(message, details=[{"field": "codes", "message": message}])


def open_survey(
    session: Session, *, run_id: int, actor: Actor, codes: int, open_link: bool
) -> Survey:
    """Open a survey on the run's current stage; the codes are made at their one reveal."""
    _check_counts(codes, open_link)
    ctx = load_run(session, run_id, actor, lock=True)
    acting_as(ctx, actor)
    _check_stage(ctx)
    _check_none_open(session, run_id)
    survey = Survey(
        run_id=run_id,
        stage=ctx.run.stage,
        org_id=ctx.org.id or 0,
        questions=questions_for(ctx.tpl, ctx.org.name),
        nonce=new_nonce(),
        open_link=open_link,
        code_count=codes,
        salt=keys.new_salt(),
        opened_by=actor.user_id,
        closes_at=ctx.run.deadline,
    )
    session.add(survey)
    session.flush()
    _log(session, run_id, "survey_opened", actor.user_id, survey_id=survey.id, codes=codes)
    return survey


def load_survey(session: Session, survey_id: int, actor: Actor) -> tuple[Survey, RunContext]:
    """The survey and its run's context; NotFound if missing or out of the actor's reach."""
    survey = session.get(Survey, survey_id)
    if survey is None:
        raise NotFound("问卷不存在", details={"survey_id": survey_id})
    try:
        ctx = load_run(session, survey.run_id, actor)
    except NotFound:
        raise NotFound("问卷不存在", details={"survey_id": survey_id}) from None
    return survey, ctx


def surveys_of(session: Session, run_id: int) -> list[Survey]:
    """The run's surveys, newest first (the caller has checked reach)."""
    stmt = select(Survey).where(Survey.run_id == run_id).order_by(col(Survey.id).desc())
    return list(session.exec(stmt).all())


def reveal_codes(session: Session, *, survey_id: int, actor: Actor) -> tuple[Survey, list[str]]:
    """Make the survey's codes and give them to its opener, once; Conflict on any later call."""
    survey, _ = load_survey(session, survey_id, actor)
    if survey.opened_by != actor.user_id:
        raise Forbidden("编码只交给发起问卷的人")
    if survey.code_count == 0:
        raise Conflict("本问卷只用公开链接，没有编码", details={"rule": "no_codes"})
    if survey.closed_at is not None:
        raise Conflict("问卷已结束，编码不再有效", details={"rule": "survey_closed"})
    table = Survey.__table__  # type: ignore[attr-defined]
    now = utcnow()
    claimed = session.execute(
        update(table)
        .where(table.c.id == survey_id, table.c.codes_shown_at.is_(None))
        .values(codes_shown_at=now)
        .returning(table.c.id)
    ).first()
    if claimed is None:
        raise Conflict(
            "编码只提供一次，已经领取过；如已遗失，请结束本问卷后重新发起",
            details={"rule": "codes_shown_once"},
        )
    codes = _make_codes(session, survey)
    survey.codes_shown_at = now
    return survey, codes


def _make_codes(session: Session, survey: Survey) -> list[str]:
    codes: set[str] = set()
    while len(codes) < survey.code_count:
        codes.add(keys.new_code())
    ordered = sorted(codes)
    session.execute(
        SurveyCode.__table__.insert(),  # type: ignore[attr-defined]
        [{"survey_id": survey.id, "code": keys.code_hash(survey.nonce, c)} for c in ordered],
    )
    return ordered


def _drop_addresses(session: Session, survey_ids: list[int]) -> None:
    if survey_ids:
        session.execute(delete(SurveyHit).where(col(SurveyHit.survey_id).in_(survey_ids)))


def close_survey(session: Session, *, survey_id: int, actor: Actor) -> Survey:
    """Close the survey by hand; Conflict if already closed."""
    survey, ctx = load_survey(session, survey_id, actor)
    acting_as(ctx, actor)
    table = Survey.__table__  # type: ignore[attr-defined]
    now = utcnow()
    done = session.execute(
        update(table)
        .where(table.c.id == survey_id, table.c.closed_at.is_(None))
        .values(closed_at=now, closed_by=actor.user_id, salt=None)
        .returning(table.c.id)
    ).first()
    if done is None:
        raise Conflict("问卷已经结束", details={"rule": "survey_closed"})
    _drop_addresses(session, [survey_id])
    _log(session, survey.run_id, "survey_closed", actor.user_id, survey_id=survey_id)
    session.refresh(survey)
    return survey


def close_due(session: Session, as_of: datetime) -> int:
    """Close every open survey whose run's deadline has passed (the periodic sweep); how many."""
    rows = session.execute(
        select(Survey.id, Survey.run_id)
        .join(Run, col(Run.id) == col(Survey.run_id))
        .where(
            col(Survey.closed_at).is_(None),
            col(Run.deadline).is_not(None),
            col(Run.deadline) <= as_of,
        )
    ).all()
    ids = [int(r[0]) for r in rows]
    if not ids:
        return 0
    table = Survey.__table__  # type: ignore[attr-defined]
    session.execute(
        update(table)
        .where(table.c.id.in_(ids), table.c.closed_at.is_(None))
        .values(closed_at=as_of, salt=None)
    )
    _drop_addresses(session, ids)
    for survey_id, run_id in rows:
        _log(session, run_id, "survey_closed", None, survey_id=survey_id, by="deadline")
    return len(ids)


def hide_comment(session: Session, *, answer_id: int, actor: Actor, reason: str) -> SurveyAnswer:
    """Hide an answer's comment from every public view, with a reason (audited)."""
    answer = session.get(SurveyAnswer, answer_id)
    if answer is None:
        raise NotFound("评议不存在", details={"answer_id": answer_id})
    survey, ctx = load_survey(session, answer.survey_id, actor)
    acting_as(ctx, actor)
    reason = reason.strip()
    if not reason or len(reason) > MAX_REASON:
        message = f"请写明隐藏理由（不超过 {MAX_REASON} 字）"
        raise InvalidInput(message, details=[{"field": "reason", "message": message}])
    if not answer.comment:
        raise Conflict("这份评议没有意见建议", details={"rule": "no_comment"})
    if answer.comment_hidden_at is not None:
        raise Conflict("该意见已隐藏", details={"rule": "comment_hidden"})
    answer.comment_hidden_at = utcnow()
    answer.comment_hidden_by = actor.user_id
    answer.comment_hidden_reason = reason
    session.add(answer)
    _log(
        session,
        survey.run_id,
        "survey_comment_hidden",
        actor.user_id,
        answer_id=answer_id,
        survey_id=survey.id,
        reason=reason,
    )
    return answer


def enter_paper_answer(
    session: Session, *, survey_id: int, actor: Actor, answer: Answer
) -> tuple[int, str]:
    """A paper questionnaire entered by staff (纸质录入); (answer id, receipt)."""
    survey, ctx = load_survey(session, survey_id, actor)
    acting_as(ctx, actor)
    target = load_target(session, survey.nonce)
    assert target is not None
    try:
        answer_id, receipt = enter_paper(session, target, answer, user_id=actor.user_id)
    except Refused as exc:
        raise Conflict(exc.message, details={"rule": "survey_closed"}) from None
    _log(
        session,
        survey.run_id,
        "survey_paper_entered",
        actor.user_id,
        survey_id=survey_id,
        answer_id=answer_id,
    )
    return answer_id, receipt


def target_of(survey: Survey) -> Target:
    """The answering view of a loaded survey (for staff pages)."""
    return Target(
        survey.id or 0,
        survey.run_id,
        survey.stage,
        survey.org_id,
        survey.nonce,
        list(survey.questions),
        survey.open_link,
        survey.code_count,
        survey.salt,
        survey.closed_at is not None,
    )


def run_of_answer(session: Session, answer_id: int, actor: Actor) -> int:
    """The run of an answer's survey; NotFound if missing or out of the actor's reach."""
    answer = session.get(SurveyAnswer, answer_id)
    if answer is None:
        raise NotFound("评议不存在", details={"answer_id": answer_id})
    survey, _ = load_survey(session, answer.survey_id, actor)
    return survey.run_id

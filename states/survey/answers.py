"""Answering a survey without logging in: by one-time code, by the open link, or on paper.

One answer is one transaction: the address's hit counter (rate limit), the code's
compare-and-set (`UPDATE … WHERE used_at IS NULL`), the appraisal record and its link to the
run's stage, and the answer row. So the stage's appraisal guard counts the answer the moment it
is committed, and of two people posting the same code at once exactly one is answered.

A refusal (`Refused`) leaves the hit counted: the caller commits it and answers the status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, insert, literal, update
from sqlalchemy import select as core_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from states.models import Evidence, EvidenceLink, Run
from states.survey import keys
from states.survey.forms import Answer
from states.survey.models import Survey, SurveyAnswer, SurveyCode, SurveyHit
from states.timeutil import utcnow

#: Rate-limit window (seconds) and the posts one address may make in it, per channel. Codes
#: allow more: at a 座谈会 many respondents share one network; each still needs a code.
WINDOW = 600
LINK_LIMIT = 20
CODE_LIMIT = 300


class Refused(Exception):
    """A post the survey refuses: `status` (404, 409, 410, 422, 429) and a message in Chinese."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or ([{"field": field, "message": message}] if field else [])


@dataclass(frozen=True)
class Target:
    """What answering needs to know of a survey, read in one query."""

    id: int
    run_id: int
    stage: str
    org_id: int
    nonce: str
    questions: list[dict[str, Any]]
    open_link: bool
    code_count: int
    salt: str | None
    closed: bool


def load_target(session: Session, nonce: str, now: datetime | None = None) -> Target | None:
    """The survey with `nonce` (closed once closed by hand, or at its run's deadline)."""
    row = session.execute(
        select(Survey, Run.deadline)
        .join(Run, col(Run.id) == col(Survey.run_id))
        .where(Survey.nonce == nonce)
    ).first()
    if row is None:
        return None
    s, deadline = row
    now = now or utcnow()
    closed = s.closed_at is not None or (deadline is not None and deadline <= now)
    return Target(
        s.id or 0,
        s.run_id,
        s.stage,
        s.org_id,
        s.nonce,
        list(s.questions),
        s.open_link,
        s.code_count,
        s.salt,
        closed,
    )


def _upsert(session: Session) -> Any:
    dialect = session.get_bind().dialect.name
    return pg_insert(SurveyHit) if dialect == "postgresql" else sqlite_insert(SurveyHit)


def count_hit(session: Session, target: Target, address: str, now: datetime) -> int:
    """Count one post from `address` in the current window; return the window's count."""
    if target.salt is None:
        return 0
    stmt = _upsert(session).values(
        survey_id=target.id,
        addr_hash=keys.address_hash(target.salt, address),
        slot=int(now.timestamp()) // WINDOW,
        hits=1,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["survey_id", "addr_hash", "slot"],
        set_={"hits": SurveyHit.__table__.c.hits + 1},  # type: ignore[attr-defined]
    ).returning(SurveyHit.__table__.c.hits)  # type: ignore[attr-defined]
    return int(session.execute(stmt).scalar_one())


def _use_code(session: Session, target: Target, code_text: str, now: datetime) -> int:
    """Mark the code used (compare-and-set); its id, or Refused (unknown 422, used 409)."""
    code = keys.normalise_code(code_text)
    if code is None:
        raise Refused(422, "编码格式不对：应为 8 位字母和数字，如 7KQ2-M9XD", field="code")
    digest = keys.code_hash(target.nonce, code)
    table = SurveyCode.__table__  # type: ignore[attr-defined]
    used = session.execute(
        update(table)
        .where(table.c.survey_id == target.id, table.c.code == digest, table.c.used_at.is_(None))
        .values(used_at=now)
        .returning(table.c.id)
    ).scalar_one_or_none()
    if used is not None:
        return int(used)
    known = session.execute(
        select(literal(1)).where(
            exists().where(and_(table.c.survey_id == target.id, table.c.code == digest))
        )
    ).first()
    if known:
        raise Refused(409, "该编码已经使用过，每个编码只能评议一次")
    raise Refused(422, "编码无效，请核对卡片上的编码", field="code")


def _device_used(session: Session, target: Target, device: str) -> bool:
    found = session.execute(
        select(SurveyAnswer.id).where(
            SurveyAnswer.survey_id == target.id, SurveyAnswer.device == device
        )
    ).first()
    return found is not None


@dataclass(frozen=True)
class _Row:
    """What one answer writes: its appraisal record, the record's link, the answer row."""

    evidence: dict[str, Any]
    link: dict[str, Any]
    answer: dict[str, Any]


def _rows(
    target: Target,
    answer: Answer,
    *,
    channel: str,
    now: datetime,
    code_id: int | None,
    device: str | None,
    entered_by: int | None,
) -> _Row:
    overall = next(iter(answer.ratings.values()))
    evidence = {
        "org_id": target.org_id,
        "run_id": target.run_id,
        "stage": target.stage,
        "kind": "appraisal",
        "data": {"rating": overall, "survey_id": target.id, "channel": channel},
        "recorded_by": entered_by,
        "recorder_org_id": target.org_id if entered_by else None,
        "on_behalf": False,
        "created_at": now,
        "status": "active",
        "version": 1,
    }
    link = {
        "run_id": target.run_id,
        "stage": target.stage,
        "linked_by": entered_by,
        "linked_at": now,
    }
    row = {
        "survey_id": target.id,
        "channel": channel,
        "code_id": code_id,
        "device": device,
        "receipt": keys.new_receipt(),
        "answers": answer.ratings,
        "comment": answer.comment,
        "entered_by": entered_by,
        "created_at": now,
    }
    return _Row(evidence, link, row)


EV = Evidence.__table__  # type: ignore[attr-defined]
LINK = EvidenceLink.__table__  # type: ignore[attr-defined]
ANSWER = SurveyAnswer.__table__  # type: ignore[attr-defined]


def _literals(table: Any, values: dict[str, Any]) -> list[Any]:
    return [literal(v, type_=table.c[k].type) for k, v in values.items()]


def _write_one_statement(session: Session, rows: _Row) -> int:
    """PostgreSQL: the record, its link and the answer in one statement (data-modifying CTEs)."""
    ev = insert(EV).values(**rows.evidence).returning(EV.c.id).cte("ev")
    link_cols = ["evidence_id", *rows.link]
    link = (
        insert(LINK)
        .from_select(link_cols, core_select(ev.c.id, *_literals(LINK, rows.link)))
        .cte("link")
    )
    answer_cols = [*rows.answer, "evidence_id"]
    stmt = (
        insert(ANSWER)
        .from_select(answer_cols, core_select(*_literals(ANSWER, rows.answer), ev.c.id))
        .returning(ANSWER.c.id)
        .add_cte(link)
    )
    return int(session.execute(stmt).scalar_one())


def _write_statements(session: Session, rows: _Row) -> int:
    """Any database: the record, its link and the answer, one statement each."""
    evidence_id = session.execute(
        insert(EV).values(**rows.evidence).returning(EV.c.id)
    ).scalar_one()
    session.execute(insert(LINK).values(evidence_id=evidence_id, **rows.link))
    stmt = insert(ANSWER).values(evidence_id=evidence_id, **rows.answer).returning(ANSWER.c.id)
    return int(session.execute(stmt).scalar_one())


def _record(
    session: Session,
    target: Target,
    answer: Answer,
    *,
    channel: str,
    now: datetime,
    code_id: int | None = None,
    device: str | None = None,
    entered_by: int | None = None,
) -> tuple[int, str]:
    """The appraisal record, its link to the stage, and the answer row; (answer id, receipt)."""
    rows = _rows(
        target,
        answer,
        channel=channel,
        now=now,
        code_id=code_id,
        device=device,
        entered_by=entered_by,
    )
    if session.get_bind().dialect.name == "postgresql":
        return _write_one_statement(session, rows), rows.answer["receipt"]
    return _write_statements(session, rows), rows.answer["receipt"]


def answer_public(
    session: Session,
    target: Target,
    answer: Answer | Refused,
    *,
    address: str,
    code: str | None,
    device: str | None,
    now: datetime | None = None,
) -> str:
    """Record a public answer (by `code`, else by the open link from `device`); its receipt.

    `answer` is the checked form, or the Refused its check gave (the hit still counts).
    """
    now = now or utcnow()
    if target.closed:
        raise Refused(410, "本次评议已经结束，感谢您的关注")
    by_code = bool(code and code.strip())
    hits = count_hit(session, target, address, now)
    if hits > (CODE_LIMIT if by_code else LINK_LIMIT):
        raise Refused(429, "提交过于频繁，请稍后再试")
    if isinstance(answer, Refused):
        raise answer
    if by_code:
        code_id = _use_code(session, target, code or "", now)
        return _record(session, target, answer, channel="code", now=now, code_id=code_id)[1]
    if not target.open_link or device is None:
        raise Refused(422, "请输入评议卡上的编码", field="code")
    if _device_used(session, target, device):
        raise Refused(409, "本设备已经提交过评议，每台设备只能评议一次")
    return _record(session, target, answer, channel="link", now=now, device=device)[1]


def enter_paper(
    session: Session, target: Target, answer: Answer, *, user_id: int
) -> tuple[int, str]:
    """Record a paper questionnaire entered by staff (纸质录入); (answer id, receipt)."""
    if target.closed:
        raise Refused(410, "问卷已结束，不能再录入")
    return _record(session, target, answer, channel="paper", now=utcnow(), entered_by=user_id)


@dataclass(frozen=True)
class Receipt:
    """What a receipt check may tell a respondent: counted, when, by which channel."""

    at: datetime
    channel: str


def check_receipt(session: Session, target: Target, receipt: str) -> Receipt | None:
    """The answer a receipt code names in this survey, or None."""
    text = receipt.strip().upper()
    if len(text) != keys.RECEIPT_LENGTH:
        return None
    row = session.execute(
        select(SurveyAnswer.created_at, SurveyAnswer.channel).where(
            SurveyAnswer.survey_id == target.id, SurveyAnswer.receipt == text
        )
    ).first()
    return Receipt(row[0], row[1]) if row else None

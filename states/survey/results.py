"""A survey's results: counts per question, the satisfaction rate, answers by channel, comments.

Staff see the results of any survey in reach at any time (`results`). The public sees only the
published aggregate (`public_summary`): the latest closed survey of a run, and only from
`MIN_PUBLISHED` answers up, so that a handful of answers cannot be traced to the people who gave
them. Hidden comments are left out of the public view; their number is published.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from states.survey.models import CHANNELS, Survey, SurveyAnswer

RATINGS = ("满意", "基本满意", "不满意")
SATISFIED = frozenset({"满意", "基本满意"})
#: Published aggregates appear only from this many answers up.
MIN_PUBLISHED = 5
CHANNEL_LABELS = {"code": "一次性编码", "link": "公开链接", "paper": "纸质录入"}


@dataclass(frozen=True)
class QuestionResult:
    """One question: how many chose each rating, and the share satisfied (满意 + 基本满意)."""

    key: str
    label: str
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float | None:
        """满意率: (满意 + 基本满意) / answers to this question, or None with no answer."""
        if not self.total:
            return None
        return sum(n for r, n in self.counts.items() if r in SATISFIED) / self.total


@dataclass(frozen=True)
class Comment:
    """A respondent's comment; `hidden_reason` is set once the secretary hid it."""

    answer_id: int
    text: str
    channel: str
    at: datetime
    hidden_reason: str | None = None


@dataclass(frozen=True)
class Results:
    """Everything a survey's answers add up to (staff view; see `PublicSummary` for the public)."""

    survey_id: int
    run_id: int
    answers: int
    questions: list[QuestionResult]
    by_channel: dict[str, int]
    comments: list[Comment] = field(default_factory=list)
    closed_at: datetime | None = None

    @property
    def rate(self) -> float | None:
        """The overall question's satisfaction rate (the first question)."""
        return self.questions[0].rate if self.questions else None

    @property
    def hidden(self) -> int:
        return sum(1 for c in self.comments if c.hidden_reason is not None)


@dataclass(frozen=True)
class PublicSummary:
    """The published aggregate of a closed survey: what a public page may show."""

    survey_id: int
    closed_at: datetime
    answers: int
    questions: list[QuestionResult]
    rate: float | None
    by_channel: dict[str, int]
    comments: list[str]
    hidden: int


def _tally(questions: list[dict[str, Any]], rows: list[Any]) -> list[QuestionResult]:
    counts: dict[str, dict[str, int]] = {q["key"]: dict.fromkeys(RATINGS, 0) for q in questions}
    for row in rows:
        for key, rating in (row.answers or {}).items():
            if key in counts and rating in counts[key]:
                counts[key][rating] += 1
    return [QuestionResult(q["key"], q["label"], counts[q["key"]]) for q in questions]


def _comment(row: Any) -> Comment:
    return Comment(row.id, row.comment, row.channel, row.created_at, row.comment_hidden_reason)


def results(session: Session, survey: Survey) -> Results:
    """The survey's results for staff: every count, every comment (hidden ones marked)."""
    rows = session.exec(
        select(SurveyAnswer)
        .where(SurveyAnswer.survey_id == survey.id)
        .order_by(col(SurveyAnswer.id))
    ).all()
    by_channel = dict.fromkeys(CHANNELS, 0)
    for row in rows:
        by_channel[row.channel] = by_channel.get(row.channel, 0) + 1
    return Results(
        survey_id=survey.id or 0,
        run_id=survey.run_id,
        answers=len(rows),
        questions=_tally(survey.questions, list(rows)),
        by_channel=by_channel,
        comments=[_comment(r) for r in rows if r.comment],
        closed_at=survey.closed_at,
    )


def publish(res: Results) -> PublicSummary | None:
    """The public view of closed results; None while open or under `MIN_PUBLISHED` answers."""
    if res.closed_at is None or res.answers < MIN_PUBLISHED:
        return None
    return PublicSummary(
        survey_id=res.survey_id,
        closed_at=res.closed_at,
        answers=res.answers,
        questions=res.questions,
        rate=res.rate,
        by_channel=res.by_channel,
        comments=[c.text for c in res.comments if c.hidden_reason is None],
        hidden=res.hidden,
    )


def latest_closed(session: Session, run_id: int) -> Survey | None:
    """The run's most recently opened survey among the closed ones, if any."""
    return session.exec(
        select(Survey)
        .where(Survey.run_id == run_id, col(Survey.closed_at).is_not(None))
        .order_by(col(Survey.id).desc())
        .limit(1)
    ).first()


def survey_summary(session: Session, survey_id: int) -> PublicSummary | None:
    """The published aggregate of one survey (None: missing, open, or < 5 answers)."""
    survey = session.get(Survey, survey_id)
    return publish(results(session, survey)) if survey is not None else None


def public_summary(session: Session, run_id: int) -> PublicSummary | None:
    """The published aggregate of the run's latest closed survey (None: none, or < 5 answers)."""
    survey = latest_closed(session, run_id)
    if survey is None:
        return None
    return publish(results(session, survey))


def percent(rate: float | None) -> str:
    """A rate as people read it: "93.3%", or "—" when there is nothing to count."""
    return "—" if rate is None else f"{rate * 100:.1f}%"

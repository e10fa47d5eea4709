"""The survey tables: a survey on a run's stage, its one-time codes, its answers, and the salted
address hashes kept for rate limiting until it closes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow

CHANNELS = ("code", "link", "paper")


class Survey(SQLModel, table=True):
    """A 群众评议 survey opened on one run's stage."""

    __tablename__ = "survey"
    __table_args__ = (Index("ix_survey_run_stage", "run_id", "stage"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False)
    stage: str = Field(sa_type=String(64), nullable=False)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    # The questions as opened: [{"key": "overall", "label": "总体评价"}, ...].
    questions: list[dict[str, Any]] = Field(default_factory=list, sa_type=JSON, nullable=False)
    # The random part of the public address (/s/<nonce>.<signature>); unique.
    nonce: str = Field(sa_type=String(64), nullable=False, unique=True)
    open_link: bool = Field(default=False, nullable=False)
    code_count: int = Field(default=0, nullable=False)
    codes_shown_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Salt for hashing network addresses (rate limits); cleared, with the hashes, at closing.
    salt: str | None = Field(default=None, sa_type=String(64))
    opened_by: int = Field(foreign_key="app_user.id", nullable=False)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    closes_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    closed_by: int | None = Field(default=None, foreign_key="app_user.id")


class SurveyCode(SQLModel, table=True):
    """A one-time code of a survey (printed on a QR card); it answers once."""

    __tablename__ = "survey_code"
    __table_args__ = (UniqueConstraint("survey_id", "code", name="uq_survey_code"),)

    id: int | None = Field(default=None, primary_key=True)
    survey_id: int = Field(foreign_key="survey.id", nullable=False)
    code: str = Field(sa_type=String(32), nullable=False)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SurveyAnswer(SQLModel, table=True):
    """One respondent's answer; it is also an appraisal record (`evidence_id`) on the stage."""

    __tablename__ = "survey_answer"
    __table_args__ = (
        UniqueConstraint("survey_id", "receipt", name="uq_survey_answer_receipt"),
        UniqueConstraint("survey_id", "code_id", name="uq_survey_answer_code"),
        UniqueConstraint("survey_id", "device", name="uq_survey_answer_device"),
    )

    id: int | None = Field(default=None, primary_key=True)
    survey_id: int = Field(foreign_key="survey.id", nullable=False, index=True)
    channel: str = Field(sa_type=String(8), nullable=False)  # code | link | paper
    code_id: int | None = Field(default=None, foreign_key="survey_code.id")
    # The open link's one-answer-per-device id (from a signed cookie); None for other channels.
    device: str | None = Field(default=None, sa_type=String(64))
    receipt: str = Field(sa_type=String(16), nullable=False)
    answers: dict[str, Any] = Field(default_factory=dict, sa_type=JSON, nullable=False)
    comment: str | None = Field(default=None, sa_type=String(500))
    comment_hidden_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    comment_hidden_by: int | None = Field(default=None, foreign_key="app_user.id")
    comment_hidden_reason: str | None = Field(default=None, sa_type=String(200))
    evidence_id: int | None = Field(default=None, foreign_key="evidence.id")
    entered_by: int | None = Field(default=None, foreign_key="app_user.id")  # paper entries
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class SurveyHit(SQLModel, table=True):
    """Posts from one (salted, hashed) network address in one time window, for rate limiting."""

    __tablename__ = "survey_hit"

    survey_id: int = Field(foreign_key="survey.id", primary_key=True)
    addr_hash: str = Field(sa_type=String(64), primary_key=True)
    slot: int = Field(primary_key=True)  # which time window: epoch seconds // its length
    hits: int = Field(default=0, nullable=False)

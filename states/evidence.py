"""Evidence records: typed and validated per kind."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from states.catalog import Template
from states.errors import InvalidInput
from states.requirements import BRANCH_SUBJECT

Text = Field(min_length=1, max_length=2000)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MeetingIn(_In):
    """A meeting held: date, title, attendance expected and present."""

    date: dt.date
    title: str = Field(min_length=1, max_length=200)
    expected: int = Field(ge=1, le=100_000)
    present: int = Field(ge=0, le=100_000)
    notes: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _attendance(self) -> MeetingIn:
        if self.present > self.expected:
            raise ValueError("实到人数不能多于应到人数")
        return self


class CommitmentIn(_In):
    """A commitment by a member (named) or by the branch (member omitted)."""

    member: str | None = Field(default=None, max_length=100)
    text: str = Text


class ActivityIn(_In):
    """An activity under one of the template's headings."""

    heading: str = Field(min_length=1, max_length=50)
    date: dt.date
    title: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class ReviewIn(_In):
    """A superior's review: achievements, problems, direction."""

    achievements: str = Text
    problems: str = Text
    direction: str = Text
    grade: str | None = Field(default=None, max_length=20)


class AppraisalIn(_In):
    """One appraisal response."""

    rating: Literal["满意", "基本满意", "不满意"]
    comment: str | None = Field(default=None, max_length=500)


class DecisionIn(_In):
    """A decision: a grade and/or a commendation."""

    grade: str | None = Field(default=None, max_length=20)
    commendation: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _some(self) -> DecisionIn:
        if not self.grade and not self.commendation:
            raise ValueError("评定结果须至少包含等次或表彰之一")
        return self


class DocumentIn(_In):
    """A document: a plan, a report, a summary, a public notice."""

    category: str = Field(min_length=1, max_length=50)
    title: str = Field(min_length=1, max_length=200)
    summary: str | None = Field(default=None, max_length=5000)
    grade: str | None = Field(default=None, max_length=20)


SCHEMAS: dict[str, type[_In]] = {
    "meeting": MeetingIn,
    "commitment": CommitmentIn,
    "activity": ActivityIn,
    "review": ReviewIn,
    "appraisal": AppraisalIn,
    "decision": DecisionIn,
    "document": DocumentIn,
}


def validate_evidence(
    tpl: Template, kind: str, data: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """Return the cleaned data and its subject; raise InvalidInput naming the fields."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise InvalidInput(f"未知的材料类型：{kind}", details=[{"field": "kind"}])
    try:
        parsed = schema.model_validate(data)
    except ValidationError as exc:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]) or kind, "message": e["msg"]}
            for e in exc.errors()
        ]
        raise InvalidInput(
            "材料内容有误：" + "、".join(d["field"] for d in details), details=details
        ) from exc
    subject = _subject(tpl, parsed)
    return parsed.model_dump(mode="json"), subject


def _subject(tpl: Template, parsed: _In) -> str | None:
    if isinstance(parsed, CommitmentIn):
        return parsed.member or BRANCH_SUBJECT
    if isinstance(parsed, ActivityIn):
        if tpl.headings and parsed.heading not in tpl.headings:
            raise InvalidInput(
                f"活动方面须为：{'、'.join(tpl.headings)}", details=[{"field": "heading"}]
            )
        return parsed.heading
    if isinstance(parsed, DocumentIn):
        return parsed.category
    if isinstance(parsed, DecisionIn | ReviewIn):
        if parsed.grade and tpl.grades and parsed.grade not in tpl.grades:
            raise InvalidInput(f"等次须为：{'、'.join(tpl.grades)}", details=[{"field": "grade"}])
        return parsed.grade if isinstance(parsed, DecisionIn) else None
    if isinstance(parsed, AppraisalIn):
        return parsed.rating
    return None

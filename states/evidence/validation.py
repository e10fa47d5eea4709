"""Evidence contents: typed and validated per kind (no database: the roster is checked in
`states.evidence.roster`)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from states.catalog import Template
from states.errors import InvalidInput
from states.requirements import BRANCH_SUBJECT, member_subject

Text = Field(min_length=1, max_length=2000)


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class AbsenceIn(_In):
    """A member absent from a meeting, with an optional reason (e.g. 请假)."""

    member_id: int = Field(ge=1)
    reason: str | None = Field(default=None, max_length=100)


class MeetingIn(_In):
    """A meeting held: date, title, attendance.

    Without a roster `expected` and `present` are typed; with one, `attendees` are ticked from
    it and both numbers are computed (`states.evidence.roster`).
    """

    date: dt.date
    title: str = Field(min_length=1, max_length=200)
    expected: int | None = Field(default=None, ge=1, le=100_000)
    present: int | None = Field(default=None, ge=0, le=100_000)
    attendees: list[int] | None = Field(default=None, max_length=5000)
    absences: list[AbsenceIn] | None = Field(default=None, max_length=5000)
    notes: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _attendance(self) -> MeetingIn:
        if self.attendees is None:
            if self.expected is None or self.present is None:
                raise ValueError("请填写应到、实到人数，或从党员名册勾选出席人员")
            if self.present > self.expected:
                raise ValueError("实到人数不能多于应到人数")
        elif len(set(self.attendees)) != len(self.attendees):
            raise ValueError("出席人员有重复")
        return self


class CommitmentIn(_In):
    """A commitment by a member of the roster (`member_id`), a named member (`member`, for
    branches without a roster) or by the branch (both omitted)."""

    member_id: int | None = Field(default=None, ge=1)
    member: str | None = Field(default=None, max_length=100)
    text: str = Text

    @model_validator(mode="after")
    def _one_member(self) -> CommitmentIn:
        if self.member_id is not None and self.member:
            raise ValueError("member_id 与 member 只能填写其一")
        return self


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


class SelfAssessmentIn(_In):
    """The branch's own assessment: a proposed grade and its reasons (the decision is above)."""

    grade: str = Field(min_length=1, max_length=20)
    text: str = Text


SCHEMAS: dict[str, type[_In]] = {
    "meeting": MeetingIn,
    "commitment": CommitmentIn,
    "activity": ActivityIn,
    "review": ReviewIn,
    "appraisal": AppraisalIn,
    "decision": DecisionIn,
    "document": DocumentIn,
    "self_assessment": SelfAssessmentIn,
}


def validate_evidence(
    tpl: Template, kind: str, data: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """Return the cleaned data and its subject; raise InvalidInput naming the fields."""
    schema = SCHEMAS.get(kind)
    if not isinstance(data, dict):
        raise InvalidInput("材料内容须为对象", details=[{"field": "data"}])
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
    return parsed.model_dump(mode="json", exclude_none=True), subject


def _subject(tpl: Template, parsed: _In) -> str | None:
    if isinstance(parsed, CommitmentIn):
        if parsed.member_id is not None:
            return member_subject(parsed.member_id)
        return parsed.member or BRANCH_SUBJECT
    if isinstance(parsed, ActivityIn):
        if tpl.headings and parsed.heading not in tpl.headings:
            raise InvalidInput(
                f"活动方面须为：{'、'.join(tpl.headings)}", details=[{"field": "heading"}]
            )
        return parsed.heading
    if isinstance(parsed, DocumentIn):
        return parsed.category
    if isinstance(parsed, DecisionIn | ReviewIn | SelfAssessmentIn):
        if parsed.grade and tpl.grades and parsed.grade not in tpl.grades:
            raise InvalidInput(f"等次须为：{'、'.join(tpl.grades)}", details=[{"field": "grade"}])
        return None if isinstance(parsed, ReviewIn) else parsed.grade
    if isinstance(parsed, AppraisalIn):
        return parsed.rating
    return None

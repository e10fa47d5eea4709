"""Evidence in forms and in words: the fields of each kind, form state, and the views of
records (labels, titles, recorder names) that the run, record and approvals pages show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from api.v1.convert import users_by_id
from states.catalog import Template
from states.members.models import Member
from states.models import Evidence

KIND_LABELS = {
    "meeting": "会议",
    "commitment": "承诺",
    "activity": "活动",
    "review": "领导点评",
    "appraisal": "群众评议",
    "decision": "评定结果",
    "document": "文件",
    "self_assessment": "自评",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    label: str
    kind: str = "text"  # text | textarea | date | number | select
    required: bool = False
    max_length: int | None = None
    options: tuple[str, ...] = ()
    hint: str = ""
    suggestions: tuple[str, ...] = ()


def evidence_fields(tpl: Template, kind: str) -> list[FieldSpec]:
    """The form fields of one kind of evidence (the models are in `states.evidence`)."""
    grades = tuple(tpl.grades)
    grade = (
        FieldSpec("grade", "等次", "select", options=grades)
        if grades
        else FieldSpec("grade", "等次", max_length=20)
    )
    if kind == "meeting":
        return [
            FieldSpec("title", "会议名称", required=True, max_length=200),
            FieldSpec("date", "日期", "date", required=True),
            FieldSpec("expected", "应到人数", "number", required=True),
            FieldSpec("present", "实到人数", "number", required=True),
            FieldSpec("notes", "会议内容摘要", "textarea", max_length=2000),
        ]
    if kind == "commitment":
        return [
            FieldSpec("member", "承诺人", max_length=100, hint="党员姓名；支部的集体承诺请留空"),
            FieldSpec("text", "承诺内容", "textarea", required=True, max_length=2000),
        ]
    if kind == "activity":
        heading = (
            FieldSpec("heading", "方面", "select", required=True, options=tuple(tpl.headings))
            if tpl.headings
            else FieldSpec("heading", "方面", required=True, max_length=50)
        )
        return [
            heading,
            FieldSpec("title", "活动名称", required=True, max_length=200),
            FieldSpec("date", "日期", "date", required=True),
            FieldSpec("description", "活动内容", "textarea", max_length=2000),
        ]
    if kind == "review":
        return [
            FieldSpec("achievements", "主要成绩", "textarea", required=True, max_length=2000),
            FieldSpec("problems", "存在问题", "textarea", required=True, max_length=2000),
            FieldSpec("direction", "努力方向", "textarea", required=True, max_length=2000),
            grade,
        ]
    if kind == "appraisal":
        return [
            FieldSpec(
                "rating", "评价", "select", required=True, options=("满意", "基本满意", "不满意")
            ),
            FieldSpec("comment", "意见建议", "textarea", max_length=500),
        ]
    if kind == "decision":
        return [
            grade,
            FieldSpec("commendation", "表彰", max_length=200, hint="等次与表彰至少填写一项"),
        ]
    if kind == "self_assessment":
        return [
            FieldSpec("grade", "自评等次", "select", required=True, options=grades)
            if grades
            else FieldSpec("grade", "自评等次", required=True, max_length=20),
            FieldSpec("text", "自评说明", "textarea", required=True, max_length=2000),
        ]
    if kind == "document":
        return [
            FieldSpec(
                "category",
                "类别",
                required=True,
                max_length=50,
                hint="如：承诺公示、实施方案、工作总结",
                suggestions=("承诺公示", "实施方案", "学习记录", "工作总结", "自查报告"),
            ),
            FieldSpec("title", "标题", required=True, max_length=200),
            FieldSpec("summary", "内容摘要", "textarea", max_length=5000),
            grade,
        ]
    return []


@dataclass
class EvidenceForm:
    kind: str
    label: str
    fields: list[FieldSpec]
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    open: bool = False


@dataclass(frozen=True)
class EvidenceView:
    id: int
    kind: str
    label: str
    title: str
    rows: list[tuple[str, str]]
    recorded_by: str
    recorded_at: datetime
    on_behalf: bool
    void: bool = False
    void_reason: str | None = None
    version: int = 1


def member_ids(data: dict[str, Any]) -> set[int]:
    """The roster members a record's data names (commitment, attendance)."""
    ids = {data.get("member_id")} | set(data.get("attendees") or [])
    ids |= {a.get("member_id") for a in data.get("absences") or [] if isinstance(a, dict)}
    return {int(i) for i in ids if isinstance(i, int)}


def member_names(session: Session, ids: set[int]) -> dict[int, str]:
    """Names of roster members, one query (the caller checked reach through the run)."""
    if not ids:
        return {}
    rows = session.execute(
        select(Member.id, Member.name).where(col(Member.id).in_(sorted(ids)))
    ).all()
    return {int(i): n for i, n in rows}


def subject_text(subject: str, names: dict[int, str]) -> str:
    """A stored subject in words: `member:12` becomes the member's name."""
    if subject.startswith("member:") and subject[7:].isdigit():
        return names.get(int(subject[7:]), "名册党员")
    return subject


def _title_of(
    kind: str, data: dict[str, Any], subject: str | None, names: dict[int, str] | None = None
) -> str:
    if kind in ("meeting", "activity", "document"):
        return str(data.get("title") or "")
    if kind == "commitment":
        member = data.get("member") or (names or {}).get(data.get("member_id") or 0)
        if not member and data.get("member_id"):
            member = "名册党员"
        return f"{member}的承诺" if member else "支部集体承诺"
    if kind == "appraisal":
        return str(data.get("rating") or "")
    if kind == "decision":
        return "、".join(str(v) for v in (data.get("grade"), data.get("commendation")) if v)
    if kind == "self_assessment":
        return f"自评：{data.get('grade') or ''}"
    return ""


def evidence_views(session: Session, tpl: Template, items: list[Evidence]) -> list[EvidenceView]:
    """Evidence in words: each field with its Chinese label, recorder names looked up once."""
    users = users_by_id(session, {e.recorded_by for e in items if e.recorded_by})
    names = member_names(session, {i for e in items for i in member_ids(e.data or {})})
    out = []
    for ev in items:
        specs = {f.name: f.label for f in evidence_fields(tpl, ev.kind)}
        data = ev.data or {}
        rows = [
            (specs.get(k, k), str(v))
            for k, v in data.items()
            if v not in (None, "") and k in specs and k not in ("title", "member")
        ] + _attendance_rows(data, names)
        who = users.get(ev.recorded_by) if ev.recorded_by else None
        out.append(
            EvidenceView(
                id=ev.id or 0,
                kind=ev.kind,
                label=KIND_LABELS.get(ev.kind, ev.kind),
                title=_title_of(ev.kind, data, ev.subject, names),
                rows=rows,
                recorded_by=who.display_name if who else "（未知）",
                recorded_at=ev.created_at,
                on_behalf=ev.on_behalf,
                void=ev.status == "void",
                void_reason=ev.void_reason,
                version=ev.version,
            )
        )
    return out


def _attendance_rows(data: dict[str, Any], names: dict[int, str]) -> list[tuple[str, str]]:
    """Ticked attendance in words: who came, who was absent and why."""
    rows: list[tuple[str, str]] = []
    came = [names.get(i, f"#{i}") for i in data.get("attendees") or []]
    if came:
        rows.append(("出席", "、".join(came)))
    away = [
        names.get(a.get("member_id", 0), f"#{a.get('member_id')}")
        + (f"（{a['reason']}）" if a.get("reason") else "")
        for a in data.get("absences") or []
        if isinstance(a, dict)
    ]
    if away:
        rows.append(("缺席", "、".join(away)))
    return rows

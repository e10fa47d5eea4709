"""Checking an answer form: one rating per question, an optional comment, nothing else.

The comment is kept as typed, minus surrounding blanks; bidirectional overrides (which can make
a comment read backwards on a page) and control characters other than line breaks are refused
rather than silently dropped, so what is stored is what the respondent saw. Pages escape it.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from states.errors import InvalidInput
from states.survey.results import RATINGS

MAX_COMMENT = 500
#: Bidirectional embeddings, overrides and isolates (U+202A–202E, U+2066–2069).
BIDI = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
ALLOWED_CONTROLS = frozenset("\n\r\t")


@dataclass(frozen=True)
class Answer:
    """A checked answer: question key -> rating, and the comment (None when left empty)."""

    ratings: dict[str, str]
    comment: str | None


def field_name(index: int) -> str:
    """The form field of the `index`-th question (0-based): `q_1`, `q_2`, …"""
    return f"q_{index + 1}"


def _bad_char(ch: str) -> bool:
    if ch in BIDI:
        return True
    return unicodedata.category(ch) in ("Cc", "Cs") and ch not in ALLOWED_CONTROLS


def check_comment(text: str | None) -> str | None:
    """The comment to store, or None when empty; InvalidInput naming `comment` otherwise."""
    text = (text or "").strip()
    if not text:
        return None
    if len(text) > MAX_COMMENT:
        raise _invalid("comment", f"意见建议不能超过 {MAX_COMMENT} 字（现有 {len(text)} 字）")
    if any(_bad_char(ch) for ch in text):
        raise _invalid(
            "comment", "意见建议中含有不可见的控制字符或文字方向控制符，请删除后重新提交"
        )
    return text.replace("\r\n", "\n")


def _invalid(name: str, message: str) -> InvalidInput:
    return InvalidInput(message, details=[{"field": name, "message": message}])


def check_ratings(questions: list[dict[str, Any]], fields: dict[str, str]) -> dict[str, str]:
    """Question key -> rating from `q_<n>` fields; InvalidInput naming every bad field."""
    problems = []
    ratings: dict[str, str] = {}
    for i, q in enumerate(questions):
        value = fields.get(field_name(i), "").strip()
        if value in RATINGS:
            ratings[q["key"]] = value
        elif not value:
            problems.append({"field": field_name(i), "message": f"请评价：{q['label']}"})
        else:
            problems.append(
                {"field": field_name(i), "message": f"{q['label']}：评价须为满意、基本满意或不满意"}
            )
    known = {field_name(i) for i in range(len(questions))}
    for name in sorted(k for k in fields if k.startswith("q_") and k not in known):
        problems.append({"field": name, "message": "问卷中没有这一题"})
    if problems:
        raise InvalidInput(
            "请完成全部评价：" + "；".join(p["message"] for p in problems), details=problems
        )
    return ratings


def check_answer(questions: list[dict[str, Any]], fields: dict[str, str]) -> Answer:
    """The checked answer of a submitted form (see `check_ratings`, `check_comment`)."""
    ratings = check_ratings(questions, fields)
    return Answer(ratings, check_comment(fields.get("comment")))

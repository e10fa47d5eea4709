"""Confirmation steps (确认页): a small form page shown before 同意, 退回 and 撤回 act.

The first POST of a decision form (or of the withdraw button) does not act: it answers this
page, which says what will happen (which branch, which stage, the opinion) and carries the same
fields back with two buttons, 确认 (`step=confirm`, the only one that acts) and 返回
(`step=back`). No JavaScript is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from fastapi.responses import Response

from api.web import session as web

STEP_FIELD = "step"
CONFIRM = "confirm"
BACK = "back"


@dataclass
class Confirmation:
    title: str
    #: (label, value) lines: 支部, 活动, 申请, 意见…
    rows: list[tuple[str, str]]
    #: What pressing 确认 will do, in one or two sentences.
    outcome: str
    action: str
    hidden: dict[str, str] = field(default_factory=dict)
    confirm_label: str = "确认"
    danger: bool = False


def step_of(form: dict[str, str]) -> str:
    """`confirm`, `back`, or "" for the first POST (which only shows the confirmation)."""
    value = form.get(STEP_FIELD, "")
    return value if value in (CONFIRM, BACK) else ""


def confirm_page(request: Request, c: Confirmation) -> Response:
    return web.render(request, "confirm_decision.html", {"c": c})

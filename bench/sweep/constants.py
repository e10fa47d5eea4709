"""Paths, fixed inputs, the goal and markers shared by the sweep benchmark."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from states import timers

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
JSONL = RESULTS / "sweep.jsonl"
EXPLAIN_TXT = RESULTS / "sweep_explain.txt"
PROFILE_TXT = RESULTS / "sweep_profile.txt"
TEMPLATE = "chuangxian_zhengyou"
#: 09:00 in Asia/Shanghai on Tuesday 1 December 2026.
AS_OF = datetime(2026, 12, 1, 1, 0, tzinfo=UTC)
FUTURE_DAYS = 180
FUTURE_FROM = 30
GOAL_SECONDS = 1.0
# `python -m bench` keeps blocks between `<!-- bench.X: start -->` and `<!-- bench.X: end -->`;
# the inner pair is the one this section is looked up by.
SECTION_START = "<!-- bench.sweep: start -->\n<!-- sweep:begin -->"
SECTION_END = "<!-- sweep:end -->\n<!-- bench.sweep: end -->"
TIMER_COLUMNS = ("id", *timers._TIMER_COLUMNS)
RUN_COLUMNS = (
    "id",
    "campaign_id",
    "org_id",
    "stage",
    "entered_at",
    "deadline",
    "version",
    "pending_request_id",
    "escalation_level",
    "completed_at",
)

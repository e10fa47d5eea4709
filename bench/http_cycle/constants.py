"""Paths, fixed inputs, goals and markers shared by the HTTP cycle benchmark."""

from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
JSONL = RESULTS / "http_cycle.jsonl"
PROFILE_RAW = RESULTS / "http_cycle_profile.txt"
API = "/api/v1"
TEMPLATE = "chuangxian_zhengyou"
MEETING = {"date": "2026-11-20", "title": "动员大会", "expected": 3, "present": 3}
ROOT = "B"
GOAL_CALLS, GOAL_P99_MS = 1000, 50.0
SECTION_START = "<!-- bench.http_cycle: start -->"
SECTION_END = "<!-- bench.http_cycle: end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SPEC = re.compile(r"\d+(\+(nodelay|reuseport|serve))?")

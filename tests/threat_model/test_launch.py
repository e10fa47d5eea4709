"""Threat model, finding 10: a launch whose dated deadlines are already past.

Launched as it was, every branch is overdue on arrival and the first sweep escalates each of
them. Every entry point (service, API, web, CLI) now refuses it with the list of stages unless
the launcher says so explicitly (`allow_past`, the "仍然发起" box, `--allow-past`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from api.cli import main
from states.models import Campaign, Run
from states.timeutil import local_date, utcnow
from tests.api_world import World

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
CXZY = ["mobilize", "pledge", "strive", "review", "appraise", "commend"]


def _days_ago(n: int) -> str:
    return (local_date(utcnow()) - timedelta(days=n)).isoformat()


def _counts(w: World) -> tuple[int, int]:
    with Session(w.engine) as s:
        campaigns = s.exec(select(func.count()).select_from(Campaign)).one()
        runs = s.exec(select(func.count()).select_from(Run)).one()
    return int(campaigns), int(runs)


def _body(w: World, **extra: Any) -> dict[str, Any]:
    schedule = {"mobilize": {"date": _days_ago(1)}, "review": {"date": _days_ago(30)}}
    body = {"template": "chuangxian_zhengyou", "root_org_id": w.orgs["H1"].id}
    return {**body, "schedule": schedule, **extra}


def test_api_refuses_past_deadlines_with_the_stage_list(world: World) -> None:
    w = world
    before = _counts(w)
    for url in ("/api/v1/campaigns", "/api/v1/campaigns/preview"):
        r = w.post("org_b", url, json=_body(w))
        assert r.status_code == 422, r.text
        details = r.json()["details"]
        assert [(d["stage"], d["deadline"]) for d in details] == [
            ("mobilize", _days_ago(1)),
            ("review", _days_ago(30)),
        ]
        assert "宣传发动" in r.json()["message"] and "领导点评" in r.json()["message"]
    assert _counts(w) == before
    # Today's date is not past yet (the deadline is 23:59:59 Shanghai time).
    today = _body(w, schedule={"mobilize": {"date": _days_ago(0)}})
    assert w.post("org_b", "/api/v1/campaigns/preview", json=today).status_code == 200
    # Said explicitly, the launch goes ahead.
    assert w.post("org_b", "/api/v1/campaigns/preview", json=_body(w, allow_past=True)).is_success
    r = w.post("org_b", "/api/v1/campaigns", json=_body(w, allow_past=True))
    assert r.status_code == 201, r.text
    assert r.json()["total"] == 3
    assert _counts(w) == (before[0] + 1, before[1] + 3)


def test_api_allow_past_must_be_a_boolean(world: World) -> None:
    r = world.post("org_b", "/api/v1/campaigns", json=_body(world, allow_past="maybe"))
    assert r.status_code == 422
    assert any(d["field"] == "allow_past" for d in r.json()["details"])


def _web_form(w: World) -> tuple[TestClient, dict[str, Any]]:
    token = w.tokens["org_b"]["Authorization"].split()[1]
    client = TestClient(w.client.app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set("dj_session", token)
    csrf = CSRF.search(client.get("/campaigns/new").text)
    assert csrf is not None
    data: dict[str, Any] = {
        "template": "chuangxian_zhengyou",
        "kinds": ["党支部"],
        "root": str(w.orgs["H1"].id),
        "csrf_token": csrf.group(1),
    }
    for sid in CXZY:
        data |= {f"mode_{sid}": "working_days", f"days_{sid}": "10", f"date_{sid}": ""}
    data |= {"mode_mobilize": "date", "date_mobilize": _days_ago(3)}
    return client, data


def test_web_launch_needs_the_still_launch_box_for_past_deadlines(world: World) -> None:
    client, data = _web_form(world)
    preview = client.post("/campaigns/new/preview", data=data)
    assert preview.status_code == 200, preview.text
    assert f"宣传发动（{_days_ago(3)}）" in preview.text
    assert 'name="allow_past"' in preview.text and "仍然发起" in preview.text
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', preview.text))
    confirm = {**hidden, "kinds": ["党支部"], "action": "confirm"}
    before = _counts(world)
    refused = client.post("/campaigns/new", data=confirm)
    assert refused.status_code == 422
    assert "仍然发起" in refused.text and 'id="launch-error"' in refused.text
    assert _counts(world) == before
    # With the box ticked, the launch goes ahead.
    launched = client.post("/campaigns/new", data={**confirm, "allow_past": "1"})
    assert launched.status_code == 303, launched.text
    assert _counts(world) == (before[0] + 1, before[1] + 3)


def test_web_preview_of_future_deadlines_offers_no_box(world: World) -> None:
    client, data = _web_form(world)
    data |= {"date_mobilize": _days_ago(-7)}
    preview = client.post("/campaigns/new/preview", data=data)
    assert preview.status_code == 200
    assert 'name="allow_past"' not in preview.text


CSV = """编码,名称,类型,上级编码,党员人数,书记,联系方式
B,示例市卫生局党委,党委,,0,,
S1,内科第一党支部,党支部,B,5,,
"""


def test_cli_refuses_past_deadlines_with_exit_2(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DANGJIAN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    (tmp_path / "orgs.csv").write_text(CSV, encoding="utf-8")
    assert runner.invoke(main, ["import-orgs", str(tmp_path / "orgs.csv")]).exit_code == 0
    schedule = tmp_path / "schedule.yaml"
    schedule.write_text(f"strive: {{date: {_days_ago(2)}}}\n", encoding="utf-8")
    args = ["campaign", "launch", "--template", "chuangxian_zhengyou", "--root", "B"]
    r = runner.invoke(main, [*args, "--schedule", str(schedule)])
    assert r.exit_code == 2, r.output
    assert "全面争创" in r.output and _days_ago(2) in r.output
    assert "0 个" not in r.output and "已发起" not in r.output
    r = runner.invoke(main, [*args, "--schedule", str(schedule), "--allow-past"])
    assert r.exit_code == 0 and "个支部的创建进度" in r.output, r.output

"""One glossary (states/glossary.py): no retired word (进程, 群众测评, bare 测评) in the product.

Scans every string literal of the .py sources under states/, api/, notifications/ and workflows/
and every page and notice template; the only exceptions are the phrases in `glossary.ALLOWED`
(an operating-system process). Then renders real pages (desk, run page, dashboard, approvals)
through the test client, SQLite and PostgreSQL, and checks them the same way; and checks the
desk after a return says what to do instead of "可以申请".
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from sqlmodel import Session, select

from states import glossary
from states.models import Request
from tests.api_world import World
from tests.browser import web_user
from tests.test_web_pages import MEETING_FORM

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("states", "api", "notifications", "workflows")
TEMPLATE_DIRS = ("api/web/templates", "notifications/templates")


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string constant in a module (f-string pieces included), with its line."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def _offences(where: str, text: str) -> list[str]:
    return [f"{where}: {w} → {glossary.RETIRED[w]}" for w in glossary.retired_in(text)]


def test_no_retired_word_in_the_sources_strings() -> None:
    found: list[str] = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == ROOT / "states" / "glossary.py":
                continue
            for line, text in _strings(path):
                found += _offences(f"{path.relative_to(ROOT)}:{line}", text)
    assert not found, "\n".join(found)


def test_no_retired_word_in_page_notice_or_template_files() -> None:
    found: list[str] = []
    files = [p for d in TEMPLATE_DIRS for p in sorted((ROOT / d).rglob("*")) if p.is_file()]
    files += sorted((ROOT / "states" / "templates").glob("*.yaml"))
    assert len(files) > 20
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += _offences(f"{path.relative_to(ROOT)}:{number}", line)
    assert not found, "\n".join(found)


def test_the_checker_catches_retired_words_and_spares_the_allowed_ones() -> None:
    assert glossary.retired_in("支部进程不存在") == ["进程"]
    assert glossary.retired_in("至少 10 份群众测评") == ["群众测评", "测评"]
    assert glossary.retired_in("定时任务进程已启动") == []
    assert glossary.retired_in("创建进度 · 群众评议") == []


def test_stage_names_come_from_the_catalog() -> None:
    names = glossary.stage_names()
    assert names["jinwei_shengji"]["public_rating"] == glossary.APPRAISAL
    assert set(names) >= {"chuangxian_zhengyou", "jinwei_shengji", "sqsy_fuwuxing"}
    assert all(not glossary.retired_in(n) for stages in names.values() for n in stages.values())


def test_rendered_pages_use_no_retired_word(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    com = web_user(w.client.app, "com_g1")
    run_id = w.runs["S1"]
    sec.post(f"/runs/{run_id}/evidence", MEETING_FORM)
    pages = {
        "desk (secretary)": sec.get("/"),
        "run page": sec.get(f"/runs/{run_id}"),
        "desk (committee)": com.get("/"),
        "campaigns": com.get("/campaigns"),
        "dashboard": com.get(f"/campaigns/{w.campaign_id}"),
        "approvals": com.get("/approvals"),
    }
    found: list[str] = []
    for name, resp in pages.items():
        assert resp.status_code == 200, name
        found += _offences(name, resp.text)
    assert not found, "\n".join(found)
    # The checklist names the stage once (its heading), not before every item.
    assert "宣传发动：动员大会" not in pages["run page"].text


def test_after_a_return_the_desk_says_what_to_do_and_offers_reapplying(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    com = web_user(w.client.app, "com_g1")
    run_id = w.runs["S1"]
    sec.post(f"/runs/{run_id}/evidence", MEETING_FORM)
    assert "可以申请进入下一阶段" in sec.get("/").text
    sec.post(f"/runs/{run_id}/advance", {"comment": "请审批"})
    with Session(w.engine) as s:
        req_id = s.execute(select(Request.id)).scalar_one()
    resp = com.post(f"/approvals/{req_id}/return", {"reason": "请补充照片", "step": "confirm"})
    assert resp.status_code == 303
    desk = sec.get("/").text
    assert "请补充照片" in desk and "已被退回：请按上面的意见修改或补充材料后重新申请" in desk
    assert "可以申请进入下一阶段" not in desk and ">重新申请</a>" in desk
    page = sec.get(f"/runs/{run_id}").text
    assert "重新申请进入下一阶段" in page and "可以申请进入下一阶段" not in page


def test_pages_take_their_action_words_from_the_glossary(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Change a word in glossary.ACTIONS and the approval page, the run page and the
    confirmation step all say the new word: none of them spells its own."""
    w = world
    sec = web_user(w.client.app, "sec_s1")
    com = web_user(w.client.app, "com_g1")
    run_id = w.runs["S1"]
    sec.post(f"/runs/{run_id}/evidence", MEETING_FORM)
    sec.post(f"/runs/{run_id}/advance", {"comment": "请审批"})
    with Session(w.engine) as s:
        req_id = s.execute(select(Request.id)).scalar_one()
    monkeypatch.setitem(glossary.ACTIONS, "approve", "准予")
    monkeypatch.setitem(glossary.ACTIONS, "return", "发还")
    monkeypatch.setitem(glossary.ACTIONS, "withdraw", "收回")
    approvals = com.get("/approvals").text
    assert ">准予</button>" in approvals and ">发还</button>" in approvals
    assert ">同意</button>" not in approvals and ">退回</button>" not in approvals
    assert ">收回申请</button>" in sec.get(f"/runs/{run_id}").text
    step = com.post(f"/approvals/{req_id}/return", {"reason": "请补充照片"})
    assert step.status_code == 200 and "确认发还" in step.text and "确认退回" not in step.text

"""群众评议 in Chromium on a 375-px phone: a secretary opens a survey and prints its code cards;
respondents scan a card (the code comes in the address), answer on one screen, get a receipt,
and cannot answer twice with one code; the open link takes one answer per device; the 10th
answer passes the stage's guard and the branch can then request to move on; the deadline sweep
closes a survey; the published aggregate appears only from 5 answers up.

Screenshots go to artifacts/screenshots/.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import update
from sqlmodel import Session

from states.models import Run
from states.timeutil import utcnow
from tests.browser import PHONE, LiveWorld, login, phone_page, shot
from workflows import jobs

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

FORM = {f"q_{i}": "满意" for i in range(1, 7)}


def _fits_one_phone_screen(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    height = page.evaluate("document.documentElement.scrollHeight")
    assert width <= PHONE["width"], width
    assert height <= PHONE["height"], height


def _to_appraise(lw: LiveWorld, code: str) -> int:
    run_id = lw.world.runs[code]
    with Session(lw.world.engine) as s:
        s.execute(update(Run).where(Run.id == run_id).values(stage="appraise"))  # type: ignore[arg-type]
        s.commit()
    return run_id


def _api(lw: LiveWorld, user: str, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, lw.url(path), headers=lw.world.as_(user), timeout=30, **kw)


def _answer_in_page(page: Page, comment: str = "") -> None:
    for i in range(1, 7):
        page.check(f"input[name=q_{i}][value='{'基本满意' if i == 2 else '满意'}']")
    if comment:
        page.fill("#comment", comment)
    page.click("button[type=submit]")


def test_scan_a_card_answer_get_a_receipt_replay_refused_and_the_guard_passes(
    browser: Browser, live_world: LiveWorld, page: Page, phone: Page
) -> None:
    lw = live_world
    run_id = _to_appraise(lw, "S1")
    login(page, lw.base_url, "sec_s1")
    page.goto(lw.url(f"/runs/{run_id}"))
    page.click("#survey-link")
    page.fill("input[name=codes]", "12")
    page.click("#open-survey button[type=submit]")
    page.wait_for_selector("#print-cards")
    shot(page, "staff-opened")
    page.click("#print-cards")
    cards = page.locator(".card .code")
    assert cards.count() == 12
    codes = [c.strip() for c in cards.all_text_contents()]
    assert page.locator(".card svg").count() == 12  # inline QR codes, no image to fetch
    shot(page, "cards")
    # The cards are shown once: the page offers no second reveal, and a second visit is refused.
    page.goto(lw.url(f"/runs/{run_id}/survey"))
    assert page.locator("#print-cards").count() == 0
    form_url = page.locator(".survey-url").first.get_attribute("href") or ""
    assert re.search(r"/s/[\w-]+\.[\w-]+$", form_url), form_url

    # Scan the first card: the code is in the address; answer on one phone screen.
    phone.goto(f"{form_url}?code={codes[0]}")
    assert phone.input_value("#code") == codes[0]
    _fits_one_phone_screen(phone)
    shot(phone, "form-phone")
    _answer_in_page(phone, comment="希望多开展义诊活动")
    receipt = (phone.text_content("#receipt") or "").strip()
    assert len(receipt) == 10
    shot(phone, "receipt-phone")
    phone.click("text=查询是否计入")
    assert "已计入" in (phone.text_content("main") or "")
    # Replay the same card: refused.
    phone.goto(f"{form_url}?code={codes[0]}")
    _answer_in_page(phone)
    assert "已经使用过" in (phone.text_content("main") or "")
    shot(phone, "replay-refused")

    # Eight more over plain HTTP, then the branch still cannot move on.
    for code in codes[1:9]:
        assert httpx.post(form_url, data={**FORM, "code": code}).status_code == 200
    request_url = f"/api/v1/runs/{run_id}/requests"
    early = _api(lw, "sec_s1", "POST", request_url, json={"comment": "请审批"})
    assert early.status_code == 409, early.text
    assert "已收到 9 份群众评议表" in early.text
    # The 10th answer, in the phone: the guard passes by itself and the request goes in.
    phone.goto(f"{form_url}?code={codes[9]}")
    _answer_in_page(phone)
    phone.wait_for_selector("#receipt")
    page.goto(lw.url(f"/runs/{run_id}"))
    assert "已收到 10 份群众评议表" in (page.text_content("main") or "")
    asked = _api(lw, "sec_s1", "POST", request_url, json={"comment": "请审批"})
    assert asked.status_code == 201, asked.text
    page.goto(lw.url(f"/runs/{run_id}/survey"))
    assert "共 10 份" in (page.text_content(f"#result-{_survey_id(page)}") or "")
    shot(page, "staff-results")


def _survey_id(page: Page) -> str:
    section = page.locator("section.survey").first.get_attribute("id") or ""
    return section.removeprefix("survey-")


def test_the_open_link_takes_one_answer_per_device(
    browser: Browser, live_world: LiveWorld, phone: Page
) -> None:
    lw = live_world
    run_id = _to_appraise(lw, "S2")
    opened = _api(
        lw, "sec_s2", "POST", f"/api/v1/runs/{run_id}/survey", json={"codes": 0, "open_link": True}
    ).json()
    link = opened["open_url"]
    phone.goto(link)
    assert phone.locator("#code").count() == 0  # no codes on this survey: nothing to type
    _fits_one_phone_screen(phone)
    _answer_in_page(phone)
    phone.wait_for_selector("#receipt")
    phone.goto(link)
    _answer_in_page(phone)
    assert "本设备已经提交过" in (phone.text_content("main") or "")
    shot(phone, "link-second-refused")
    with phone_page(browser) as second:  # another device
        second.goto(link)
        _answer_in_page(second)
        second.wait_for_selector("#receipt")
    results = _api(lw, "sec_s2", "GET", f"/api/v1/runs/{run_id}/survey").json()["items"][0]
    assert results["by_channel"]["link"] == 2 and results["answers"] == 2


def test_the_deadline_sweep_closes_and_aggregates_show_from_five(
    live_world: LiveWorld, phone: Page
) -> None:
    lw = live_world
    run_id = _to_appraise(lw, "S3")
    opened = _api(
        lw, "com_h1", "POST", f"/api/v1/runs/{run_id}/survey", json={"codes": 0, "open_link": True}
    ).json()
    link = opened["open_url"]
    for i in range(4):
        assert httpx.post(link, data={**FORM, "comment": f"意见{i}"}).status_code == 200
    deadline = utcnow() + timedelta(hours=1)
    with Session(lw.world.engine) as s:
        s.execute(update(Run).where(Run.id == run_id).values(deadline=deadline))  # type: ignore[arg-type]
        s.commit()
    report = jobs.sweep(lw.world.engine, "deadline_sweep", deadline + timedelta(minutes=1))
    assert report.counts.get("survey_closed") == 1
    phone.goto(link)
    text = phone.text_content("main") or ""
    assert "已经结束" in text and "满意率" not in text and "意见0" not in text
    shot(phone, "closed-below-five")
    # A second survey (the deadline extended) with five answers publishes its aggregate.
    with Session(lw.world.engine) as s:
        s.execute(
            update(Run).where(Run.id == run_id).values(deadline=utcnow() + timedelta(days=5))  # type: ignore[arg-type]
        )
        s.commit()
    link = _api(
        lw, "com_h1", "POST", f"/api/v1/runs/{run_id}/survey", json={"codes": 0, "open_link": True}
    ).json()["open_url"]
    for i in range(5):
        rating = "不满意" if i == 0 else "满意"
        data = {**FORM, "q_1": rating, "comment": f"<b>建议{i}</b>"}
        assert httpx.post(link, data=data).status_code == 200
    survey_id = _api(lw, "com_h1", "GET", f"/api/v1/runs/{run_id}/survey").json()["items"][0]["id"]
    assert _api(lw, "com_h1", "POST", f"/api/v1/surveys/{survey_id}/close").status_code == 200
    phone.goto(link)  # closed by hand this time
    text = phone.text_content("main") or ""
    assert "共收到 5 份" in text and "80.0%" in text and "<b>建议1</b>" in text
    assert phone.locator("main b", has_text="建议1").count() == 0  # shown as text, not markup
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    shot(phone, "closed-published")

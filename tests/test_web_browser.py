"""The pages in a real browser (Debian's Chromium through Playwright), against a live server.

One scenario walks a branch through two approvals the way people do it: the secretary records
a meeting and asks to advance, the committee member approves; she records the commitments and
asks again; the committee member returns it with an opinion (which contains `<script>` and must
show as text, not run); she sees the opinion, fixes it, asks again; it is approved, and the
campaign dashboard's counts per stage follow. Further tests: another branch's run is a 404 page,
and the desk on a 375-px phone has no horizontal scrolling. Screenshots of the main pages go to
artifacts/screenshots/ (see tests/browser.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.browser import DESKTOP, PHONE, LiveWorld, login, logout, shot

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

SCRIPT_OPINION = "承诺内容要更具体，写明时限<script>window.__xss = 1</script>"
SCRIPT_COMMENT = "已按意见修改<script>window.__xss2 = 1</script>"


def open_form(page: Page, kind: str) -> None:
    """Open the evidence form of `kind` (a <details> panel) if it is closed."""
    panel = page.locator(f"#form-{kind}")
    if panel.get_attribute("open") is None:
        panel.locator("summary").click()


def submit_form(page: Page, kind: str) -> None:
    page.locator(f"#form-{kind} button[type=submit]").click()
    page.wait_for_load_state()


def record_commitment(page: Page, member: str, text: str) -> None:
    open_form(page, "commitment")
    page.fill("#commitment-member", member)
    page.fill("#commitment-text", text)
    submit_form(page, "commitment")
    assert page.locator(".flash-success").first.is_visible()


def stage_counts(page: Page, live: LiveWorld) -> dict[str, int]:
    """The campaign dashboard's number of runs per stage (the committee helper's page)."""
    page.goto(live.url(f"/campaigns/{live.world.campaign_id}"))
    counts = {}
    for el in page.locator("[data-stage-count]").all():
        counts[str(el.get_attribute("data-stage-count"))] = int((el.text_content() or "0").strip())
    return counts


def approvals_card(page: Page, org_name: str) -> Locator:
    return page.locator("article.approval", has_text=org_name)


def test_secretary_and_committee_take_a_branch_through_two_stages(
    browser: Browser, live_world: LiveWorld
) -> None:
    live = live_world
    run_id = live.world.runs["S1"]
    branch = "内科第一党支部"
    sec = browser.new_context(viewport=DESKTOP)
    com = browser.new_context(viewport=DESKTOP)
    org = browser.new_context(viewport=DESKTOP)
    try:
        s, c, o = sec.new_page(), com.new_page(), org.new_page()
        for p in (s, c, o):
            p.set_default_timeout(10_000)
        login(o, live.base_url, "org_b")
        before = stage_counts(o, live)
        assert before["mobilize"] == 4 and before["pledge"] == 0, before
        shot(o, "dashboard-before")

        # The secretary: log-in page, desk, her run with what is still needed.
        s.goto(live.url("/login"))
        shot(s, "login")
        login(s, live.base_url, "sec_s1")
        card = s.locator(f"article.run-card[data-run-id='{run_id}']")
        assert "尚未记录动员大会" in card.inner_text()
        shot(s, "desk-desktop")
        card.locator("a.btn").click()
        s.wait_for_url(live.url(f"/runs/{run_id}"))

        # Asking too early shows every unmet reason and writes nothing.
        s.locator("#actions form[action$='/advance'] button").click()
        assert "尚未记录动员大会" in s.locator("#error").inner_text()
        assert s.locator("#actions .flash-info").count() == 0

        # A meeting with more present than expected: the message sits by the field, input kept.
        open_form(s, "meeting")
        s.fill("#meeting-title", "创先争优动员大会")
        s.fill("#meeting-date", "2026-11-20")
        s.fill("#meeting-expected", "3")
        s.fill("#meeting-present", "5")
        submit_form(s, "meeting")
        assert "实到人数不能多于应到人数" in s.locator("#form-meeting .field-error").inner_text()
        assert s.input_value("#meeting-title") == "创先争优动员大会"
        s.fill("#meeting-present", "3")
        submit_form(s, "meeting")
        assert "已录入会议" in s.locator(".flash-success").inner_text()
        assert "创先争优动员大会" in s.locator("#evidence").inner_text()
        s.fill("#advance-comment", "动员大会已召开，请审批")
        s.locator("#actions form[action$='/advance'] button").click()
        assert "等待「第一医院内科党总支」审批" in s.locator(".flash-success").inner_text()

        # The committee member approves from the inbox, seeing the meeting inline.
        login(c, live.base_url, "com_g1")
        assert branch in c.locator("#approvals").inner_text()
        c.goto(live.url("/approvals"))
        item = approvals_card(c, branch)
        assert "创先争优动员大会" in item.inner_text()
        item.locator("form[action$='/approve'] button").click()
        c.locator("[data-testid=confirm]").click()  # the confirmation page (api.web.confirm)
        assert "已同意" in c.locator(".flash-success").inner_text()
        after_first = stage_counts(o, live)
        assert after_first["mobilize"] == 3 and after_first["pledge"] == 1, after_first

        # The secretary records the commitments: the branch's and each member's, and the notice.
        s.goto(live.url(f"/runs/{run_id}"))
        assert s.locator(".timeline li.current").inner_text() == "公开承诺"
        record_commitment(s, "", "支部承诺：每月开展一次为民服务活动")
        for member in ("党员甲", "党员乙", "党员丙"):
            record_commitment(s, member, f"{member}：立足岗位，做好本职工作")
        open_form(s, "document")
        s.fill("#document-category", "承诺公示")
        s.fill("#document-title", "支部和党员承诺公示")
        submit_form(s, "document")
        assert s.locator("#checklist .unmet").count() == 0
        s.locator("#actions form[action$='/advance'] button").click()
        shot(s, "run-pending")

        # The committee member returns it with an opinion (which contains a script tag).
        c.goto(live.url("/approvals"))
        item = approvals_card(c, branch)
        assert "党员丙：立足岗位" in item.inner_text()
        shot(c, "approvals")
        item.locator("textarea[name=reason]").fill(SCRIPT_OPINION)
        item.locator("form[action$='/return'] button").click()
        assert SCRIPT_OPINION in c.locator("[data-testid=confirm-page]").inner_text()
        c.locator("[data-testid=confirm]").click()
        assert "已退回" in c.locator(".flash-success").inner_text()

        # The secretary sees the opinion as text on her desk and the run page; nothing ran.
        s.goto(live.url("/"))
        assert SCRIPT_OPINION in s.locator(f"article[data-run-id='{run_id}'] .opinion").inner_text()
        s.goto(live.url(f"/runs/{run_id}"))
        assert s.locator("[data-testid=return-opinion]").inner_text() == SCRIPT_OPINION
        assert s.evaluate("typeof window.__xss") == "undefined"
        shot(s, "run-returned")

        # She fixes it and asks again; the comment (with a script tag) is text for the approver.
        record_commitment(s, "", "支部承诺：每月第一周周三开展一次为民服务活动，年底前完成 12 次")
        s.fill("#advance-comment", SCRIPT_COMMENT)
        s.locator("#actions form[action$='/advance'] button").click()
        assert s.locator("#actions .flash-info").count() == 1

        c.goto(live.url("/approvals"))
        item = approvals_card(c, branch)
        assert SCRIPT_COMMENT in item.inner_text()
        assert c.evaluate("typeof window.__xss2") == "undefined"
        item.locator("textarea[name=opinion]").fill("同意，按承诺抓好落实")
        item.locator("form[action$='/approve'] button").click()
        c.locator("[data-testid=confirm]").click()  # the confirmation page (api.web.confirm)
        assert "已同意" in c.locator(".flash-success").inner_text()
        assert approvals_card(c, branch).count() == 0

        # The dashboard follows: S1 left 公开承诺 for 全面争创.
        after = stage_counts(o, live)
        assert after["pledge"] == 0 and after["strive"] == 1, after
        shot(o, "dashboard-after")

        s.goto(live.url(f"/runs/{run_id}"))
        assert s.locator(".timeline li.current").inner_text() == "全面争创"
        history = s.locator("#history").inner_text()
        assert "同意，按承诺抓好落实" in history and SCRIPT_OPINION in history
        shot(s, "run-page")
    finally:
        for ctx in (sec, com, org):
            ctx.close()


def test_another_branchs_run_is_a_404_page(page: Page, live_world: LiveWorld) -> None:
    live = live_world
    login(page, live.base_url, "sec_s4")
    response = page.goto(live.url(f"/runs/{live.world.runs['S1']}"))
    assert response is not None and response.status == 404
    assert "页面不存在" in page.locator("h1").inner_text()
    assert "内科第一党支部" not in page.content()
    # Her own run opens.
    response = page.goto(live.url(f"/runs/{live.world.runs['S4']}"))
    assert response is not None and response.status == 200
    logout(page)


@pytest.mark.parametrize("username", ["sec_s2", "dual"])
def test_the_phone_desk_has_no_horizontal_scrolling(
    browser: Browser, live_world: LiveWorld, username: str
) -> None:
    live = live_world
    ctx = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    try:
        p = ctx.new_page()
        p.set_default_timeout(10_000)
        login(p, live.base_url, username)
        assert p.locator("article.run-card").count() >= 1
        width = p.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        shot(p, f"desk-phone-{username}")
        p.goto(live.url(f"/runs/{live.world.runs['S2' if username == 'sec_s2' else 'S1']}"))
        width = p.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        shot(p, f"run-phone-{username}")
    finally:
        ctx.close()

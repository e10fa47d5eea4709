"""Bulk entry from the roster in a real browser (Chromium, live server, no JS of ours needed).

A secretary on a 375-px phone fills every member's commitment in one form and sees the
commitment guard pass; on a desktop she pastes two spreadsheet columns and checks what was
recognised; she ticks a meeting's attendance from the roster. Screenshots go to
artifacts/screenshots/bulk-*.png (see tests/browser.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser import DESKTOP, PHONE, LiveWorld, login, no_sideways_scroll, shot
from tests.test_bulk_entry import add_members, set_stage

if TYPE_CHECKING:
    from playwright.sync_api import Browser

MEMBERS = ("党员甲", "党员乙", "党员丙<script>window.__xss = 1</script>")


def test_every_commitment_in_one_form_on_a_phone(browser: Browser, live_world: LiveWorld) -> None:
    live = live_world
    ids = add_members(live.world, "S1", MEMBERS)
    run_id = set_stage(live.world, "S1", "pledge")
    desk = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    phone = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    try:
        d = desk.new_page()
        d.set_default_timeout(10_000)
        login(d, live.base_url, "sec_s1")
        d.goto(live.url(f"/runs/{run_id}"))
        d.click("#bulk-commitments")
        d.wait_for_url(live.url(f"/runs/{run_id}/commitments"))
        d.locator("#paste-panel summary").click()
        d.fill("#paste", "姓名\t承诺\n党员甲\t立足岗位，做好本职\n党员丁\t服务群众\n")
        d.click("#paste-go")
        d.wait_for_load_state()
        assert "名册中没有「党员丁」" in d.locator("#bulk-error").inner_text()
        assert d.input_value(f"#m{ids['党员甲']}") == "立足岗位，做好本职"
        shot(d, "bulk-commitments-desktop")

        p = phone.new_page()
        p.set_default_timeout(10_000)
        login(p, live.base_url, "sec_s1")
        p.goto(live.url(f"/runs/{run_id}"))
        assert "尚有 3 名党员未提交承诺" in p.locator("#checklist").inner_text()
        p.click("#bulk-commitments")
        p.wait_for_url(live.url(f"/runs/{run_id}/commitments"))
        p.fill("#branch", "支部承诺：每月开展一次为民服务活动")
        for name, member_id in ids.items():
            p.fill(f"#m{member_id}", f"{name[:3]}：立足岗位，做好本职工作")
        no_sideways_scroll(p)
        shot(p, "bulk-commitments-phone")
        p.click("#save-all")
        p.wait_for_url(live.url(f"/runs/{run_id}") + "*")
        assert "已录入 4 条承诺" in p.locator(".flash-success").inner_text()
        met = p.locator("#checklist li.met", has_text="党员承诺比例")
        assert met.count() == 1, p.locator("#checklist").inner_text()
        assert p.evaluate("window.__xss") is None
        no_sideways_scroll(p)
        shot(p, "bulk-commitments-phone-after")
    finally:
        desk.close()
        phone.close()


def test_attendance_is_ticked_from_the_roster(browser: Browser, live_world: LiveWorld) -> None:
    live = live_world
    ids = add_members(live.world, "S2", ("党员戊", "党员己", "党员庚"))
    run_id = live.world.runs["S2"]
    phone = browser.new_context(viewport=PHONE, locale="zh-CN", is_mobile=True, has_touch=True)
    try:
        p = phone.new_page()
        p.set_default_timeout(10_000)
        login(p, live.base_url, "sec_s2")
        p.goto(live.url(f"/runs/{run_id}"))
        p.click("#bulk-meeting")
        p.wait_for_url(live.url(f"/runs/{run_id}/meeting"))
        assert p.locator("input[name=present]:checked").count() == 3
        p.fill("#m-title", "创先争优动员大会")
        p.fill("#m-date", "2026-11-20")
        absent = ids["党员己"]
        p.uncheck(f"#att-{absent} input[name=present]")
        p.fill(f"#r{absent}", "病假")
        no_sideways_scroll(p)
        shot(p, "bulk-meeting-phone")
        p.click("#meeting-save")
        p.wait_for_url(live.url(f"/runs/{run_id}") + "*")
        assert "应到 3 人，实到 2 人" in p.locator(".flash-success").inner_text()
        assert "创先争优动员大会" in p.locator("#evidence").inner_text()
        assert p.locator("#checklist li.met", has_text="动员大会").count() == 1
    finally:
        phone.close()

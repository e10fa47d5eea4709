"""Chromium on a 375-px phone: a supervisor records a finding and issues a 通报 from the 督导 page,
the branch's secretary answers the finding, and the 通报 and 简报 pages print without the site's
navigation; no page scrolls sideways."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import Session

from states import bulletins
from states.models import Role
from states.timeutil import local_date, utcnow
from tests.browser import LiveWorld, login, logout, no_sideways_scroll
from tests.factories import make_user

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _printed_without_nav(page: Page) -> None:
    page.emulate_media(media="print")
    assert not page.is_visible(".topbar") and not page.is_visible(".actions")
    page.emulate_media(media="screen")


def test_a_supervisor_and_a_branch_on_a_phone(live_world: LiveWorld, phone: Page) -> None:
    w = live_world.world
    with Session(w.engine) as s:
        make_user(s, "sup_phone", ("H1", Role.SUPERVISOR))
        bulletins.publish(s, w.campaign_id, utcnow())
        s.commit()
    due = (local_date(utcnow()) + timedelta(days=5)).isoformat()

    login(phone, live_world.base_url, "sup_phone")
    phone.click("a[href='/supervision']")
    phone.wait_for_selector("#new-finding")
    no_sideways_scroll(phone)
    phone.fill("#f-org", "S1")
    phone.fill("#f-due", due)
    phone.fill("#f-text", "三会一课记录不全，请补齐")
    phone.click("#new-finding button[type=submit]")
    phone.wait_for_url("**/findings/*")
    finding_url = phone.url
    assert "三会一课记录不全" in phone.inner_text(".finding")
    no_sideways_scroll(phone)

    phone.goto(live_world.url("/supervision"))
    phone.fill("#n-org", "G1")
    phone.fill("#n-title", "关于内科党总支台账的通报")
    phone.fill("#n-text", "督导组检查发现以下支部台账不全。")
    phone.fill("#n-orgs", "S1 台账不全\nS2 会议记录缺失")
    phone.click("#new-notice button[type=submit]")
    phone.wait_for_url("**/circulars/*")
    body = phone.inner_text(".circular")
    assert "内科第一党支部" in body and "会议记录缺失" in body
    no_sideways_scroll(phone)
    _printed_without_nav(phone)
    logout(phone)

    login(phone, live_world.base_url, "sec_s1")
    phone.goto(finding_url)
    phone.fill("#response", "已补齐三会一课记录")
    phone.click("form[action$='/response'] button[type=submit]")
    phone.wait_for_selector("#finding-response")
    assert phone.inner_text("#finding-status") == "已回复"
    no_sideways_scroll(phone)
    phone.goto(live_world.url(f"/orgs/{w.orgs['S1'].id}/bulletins"))
    phone.click("#archive a[href^='/circulars/']")
    phone.wait_for_url("**/circulars/*")
    logout(phone)

    login(phone, live_world.base_url, "com_h1")
    phone.goto(live_world.url(f"/orgs/{w.orgs['H1'].id}/bulletins"))
    phone.click("#archive a[href^='/bulletins/']")
    phone.wait_for_selector(".bulletin .bars")
    no_sideways_scroll(phone)
    _printed_without_nav(phone)

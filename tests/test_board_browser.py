"""Chromium on a 375-px phone: a secretary publishes the 公示 board, a member of the public opens
it without logging in, reads it without scrolling sideways, leaves a message, and prints it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser import PHONE, LiveWorld, login, no_sideways_scroll, phone_page, shot
from tests.test_board import _content, _record, _survey

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def test_publish_read_leave_a_message_and_print_on_a_phone(
    live_world: LiveWorld, phone: Page, browser: Browser
) -> None:
    w = live_world.world
    _content(w)
    _record(
        w,
        "S1",
        "review",
        {"achievements": "成效明显", "problems": "台账不全", "direction": "常态化"},
    )
    _survey(w, 5, closed=True)
    run_id = w.runs["S1"]

    login(phone, live_world.base_url, "sec_s1")
    phone.goto(live_world.url(f"/runs/{run_id}"))
    phone.click("#board-link")
    phone.wait_for_url(f"**/runs/{run_id}/board")
    phone.click("#publish-button")
    phone.wait_for_selector("#board-url")
    url = phone.inner_text("#board-url").strip()
    assert url.startswith(live_world.base_url + "/b/")
    no_sideways_scroll(phone)
    shot(phone, "staff-phone")

    with phone_page(browser) as reader:  # a member of the public: another device
        reader.goto(url)
        assert reader.inner_text("#org") == w.orgs["S1"].name
        body = reader.inner_text("body")
        assert "张*" in body and "张三丰" not in body and "台账不全" in body and "80.0%" in body
        no_sideways_scroll(reader)
        shot(reader, "board-phone")
        reader.fill("#message", "<b>路灯坏了</b>，请支部帮忙反映")
        reader.fill("#contact", "王先生")
        reader.click("#box button[type=submit]")
        reader.wait_for_selector("#sent")
        assert "留言已收到" in reader.inner_text("#sent")
        no_sideways_scroll(reader)
        shot(reader, "board-phone-sent")
        reader.emulate_media(media="print")
        assert not reader.is_visible("#box") and reader.is_visible(".qr svg")
        shot(reader, "board-print")

    phone.goto(live_world.url(f"/runs/{run_id}/board"))
    assert "<b>路灯坏了</b>，请支部帮忙反映" in phone.inner_text("#messages")
    phone.goto(live_world.url("/notices"))
    assert "意见箱" in phone.inner_text("body")
    phone.goto(live_world.url(f"/runs/{run_id}/board"))
    phone.click("#revoke-form button")
    phone.wait_for_selector("#no-board")
    reader = browser.new_page(viewport=PHONE)
    try:
        assert reader.goto(url).status == 404  # type: ignore[union-attr]
        assert "页面不存在" in reader.inner_text("body")
    finally:
        reader.close()


def test_a_committee_publishes_all_its_branches_and_prints_the_cards(
    live_world: LiveWorld, phone: Page
) -> None:
    w = live_world.world
    h1 = w.orgs["H1"].id
    login(phone, live_world.base_url, "org_h1")
    phone.goto(live_world.url(f"/campaigns/{w.campaign_id}/boards?org_id={h1}"))
    assert phone.locator(".qr-card svg").count() == 0
    phone.click("#publish-all-button")
    phone.wait_for_selector(".qr-card svg")
    assert phone.locator(".qr-card svg").count() == 3
    assert "已为 3 个支部发布公示" in phone.inner_text("body")
    no_sideways_scroll(phone)
    shot(phone, "cards-phone")
    phone.emulate_media(media="print")
    assert not phone.is_visible("#publish-all") and not phone.is_visible(".topbar")
    shot(phone, "cards-print")

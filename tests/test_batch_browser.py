"""批量审批 in Chromium on a 375-px phone: a committee keeps a stock opinion, ticks two requests,
returns both with that opinion after the confirmation step, and reads one result per branch.
"""

from __future__ import annotations

from playwright.sync_api import Browser
from sqlmodel import Session

from states.models import Request
from tests.browser import PHONE, LiveWorld, login, no_sideways_scroll, shot
from tests.test_batch_approvals import _ask


def test_a_batch_return_with_a_stock_opinion_on_a_phone(
    browser: Browser, live_world: LiveWorld
) -> None:
    w = live_world.world
    first, second = _ask(w, "S1", "sec_s1"), _ask(w, "S2", "sec_s2")
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    context.set_default_timeout(10_000)
    try:
        p = context.new_page()
        login(p, live_world.base_url, "com_g1")
        p.goto(live_world.url("/approvals"))
        no_sideways_scroll(p)
        # Keep a stock opinion (常用意见) for the committee.
        p.click("#stock summary")
        p.fill("#stock-text", "会议记录不全，请补充")
        p.click("#stock form[action='/approvals/opinions'] button[type=submit]")
        p.wait_for_url("**/approvals**")
        assert p.locator("#batch-stock option", has_text="会议记录不全，请补充").count() == 1
        # Tick both requests; leave the opinion box empty and pick the stock opinion.
        for rid in (first, second):
            p.check(f"input[name=request_id][value='{rid}']")
        p.select_option("#batch-stock", label="会议记录不全，请补充")
        shot(p, "batch-phone-form")
        p.click("#batch button[name=action][value=return]")
        # The confirmation page lists both and acts on nothing yet.
        p.wait_for_selector("[data-testid=confirm-page]")
        assert "确认批量退回（2 个申请）" in (p.locator("h1").text_content() or "")
        assert p.locator(".batch-lines li").count() == 2
        assert "会议记录不全，请补充" in (p.locator(".confirm-rows").text_content() or "")
        no_sideways_scroll(p)
        shot(p, "batch-phone-confirm")
        with Session(w.engine) as s:
            assert {s.get_one(Request, r).status for r in (first, second)} == {"pending"}
        box = p.locator("[data-testid=confirm]").bounding_box()
        assert box is not None and box["width"] >= 44 and box["height"] >= 36  # a thumb's target
        p.click("[data-testid=confirm]")
        results = p.locator("#batch-results li")
        results.first.wait_for()
        assert results.count() == 2
        assert {r.get_attribute("data-ok") for r in results.all()} == {"yes"}
        assert "2 个已办理，0 个未办理" in (p.locator("#batch-results h2").text_content() or "")
        no_sideways_scroll(p)
        shot(p, "batch-phone-results")
        with Session(w.engine) as s:
            for rid in (first, second):
                req = s.get_one(Request, rid)
                assert req.status == "returned" and req.return_reason == "会议记录不全，请补充"
    finally:
        context.close()

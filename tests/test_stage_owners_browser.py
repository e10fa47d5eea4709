"""Chromium: a 领导点评 gone overdue escalates the committee, not the branch, and sits on the
committee's desk; the campaign page says who holds each overdue branch. Desktop and phone."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from notifications.relay import drain
from states.models import InboxItem, Run
from states.timeutil import utcnow
from tests.browser import DESKTOP, PHONE, LiveWorld, login, shot
from workflows import jobs

SHOTS = Path("/tmp/owner-shots")


def _in_thread(fn: Any) -> None:
    """Run `fn` in a thread of its own (the browser fixture keeps an event loop in this one)."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def _save(page: Any, name: str) -> None:
    path = shot(page, name)
    SHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, SHOTS / path.name)


def _overdue_review(lw: LiveWorld) -> None:
    """S1 sits in 领导点评 a month past its deadline; S2 is late with its own work."""
    w, now = lw.world, utcnow()
    with Session(w.engine) as s:
        for code, stage, late in (("S1", "review", 30), ("S2", "mobilize", 3)):
            s.execute(
                update(Run)
                .where(col(Run.id) == w.runs[code])
                .values(stage=stage, deadline=now - timedelta(days=late))
                .values(entered_at=now - timedelta(days=late + 10))
            )
        s.commit()
    _in_thread(lambda: jobs.sweep(w.engine, "deadline_sweep", now))
    _in_thread(lambda: drain(w.engine, env={"DANGJIAN_BASE_URL": lw.base_url}))


def _inbox_titles(lw: LiveWorld, user: str) -> list[str]:
    w = lw.world
    with Session(w.engine) as s:
        rows = s.execute(
            select(InboxItem.title).where(col(InboxItem.user_id) == w.actors[user].user_id)
        ).scalars()
        return list(rows)


def test_an_overdue_review_sits_on_the_committees_desk(live_world: LiveWorld, page: Any) -> None:
    lw = live_world
    _overdue_review(lw)
    escalation = "内科第一党支部的领导点评待第一医院内科党总支点评，已逾期"
    assert any(escalation in t for t in _inbox_titles(lw, "com_g1"))
    assert not any("领导点评" in t for t in _inbox_titles(lw, "sec_s1"))

    login(page, lw.base_url, "com_g1")
    owed = page.locator("#owed")
    assert owed.locator(".owed-group strong").inner_text() == "待点评 1 个支部"
    link = owed.locator(".owed-list a")
    assert link.inner_text() == "内科第一党支部"
    assert escalation in page.locator("#notices").inner_text()
    _save(page, "owner-desk-1280")
    link.click()
    page.wait_for_url(lw.url(f"/runs/{lw.world.runs['S1']}"))
    assert "领导点评" in page.locator("main").inner_text()

    page.set_viewport_size(PHONE)
    page.goto(lw.url("/"))
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    box = page.locator("#owed").bounding_box()
    assert box is not None and box["width"] <= PHONE["width"]
    _save(page, "owner-desk-375")


def test_the_branch_hears_nothing_of_the_review(live_world: LiveWorld, page: Any) -> None:
    page.set_viewport_size(PHONE)
    login(page, live_world.base_url, "sec_s1")
    assert page.locator("#owed").count() == 0
    assert "领导点评" not in page.locator("#notices").inner_text()
    card = page.locator(f".run-card[data-run-id='{live_world.world.runs['S1']}']")
    assert "待上级点评" in card.locator(".badge").first.inner_text()
    assert "本阶段由上级党组织点评，无需您办理" in card.locator(".held-above").inner_text()
    assert "已逾期" not in card.inner_text()
    _save(page, "owner-branch-desk-375")


def test_the_campaign_page_says_who_holds_each_branch(live_world: LiveWorld, page: Any) -> None:
    lw = live_world
    login(page, lw.base_url, "org_b")
    page.goto(lw.url(f"/campaigns/{lw.world.campaign_id}"))
    figures = page.locator(".cm-figures")
    assert figures.locator(".cm-overdue-branch dd").inner_text() == "1"
    assert figures.locator(".cm-overdue-above dd").inner_text() == "1"
    assert figures.locator(".cm-overdue-approver dd").inner_text() == "0"
    rows = page.locator(".cm-overdue tbody tr")
    held = {
        rows.nth(i).locator("td").first.inner_text(): rows.nth(i).locator(".cm-holder").inner_text()
        for i in range(rows.count())
    }
    assert held == {"内科第一党支部": "待上级点评", "内科第二党支部": "支部办理中"}
    s1 = rows.filter(has_text="内科第一党支部")
    assert "不计入支部" in s1.inner_text() and "未督办" not in s1.inner_text()
    _save(page, "owner-dashboard-1280")
    page.set_viewport_size(PHONE)
    page.reload()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width
    _save(page, "owner-dashboard-375")
    page.set_viewport_size(DESKTOP)

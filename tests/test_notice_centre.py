"""The notice centre: paging and filters, read-all, notices that resolve
themselves when their work is done, links instead of raw URLs, reach, and the page itself.

Notices travel the real way: a state change writes the outbox, the relay (`drain`) writes the
in-app rows; the API and the pages are called over HTTP. Every DB test runs on SQLite and
PostgreSQL (tests/conftest.py).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import Session, col, select

from notifications.relay import drain
from states import inbox
from states.models import InboxItem, Run
from tests.api_world import MEETING, World
from tests.browser import PHONE, LiveWorld, login, shot, web_user
from workflows import jobs

ENV: dict[str, str] = {"DANGJIAN_BASE_URL": "http://127.0.0.1:8000"}  # no e-mail, no robots


def _relay(w: World) -> None:
    drain(w.engine, env=ENV)


def _submit(w: World, who: str = "sec_s1", run: str = "S1") -> int:
    run_id = w.runs[run]
    assert (
        w.post(
            who, f"/api/v1/runs/{run_id}/evidence", json={"kind": "meeting", "data": MEETING}
        ).status_code
        == 201
    )
    resp = w.post(who, f"/api/v1/runs/{run_id}/requests", json={"comment": "请审批"})
    assert resp.status_code == 201, resp.text
    _relay(w)
    return int(resp.json()["id"])


def _notices(w: World, who: str, query: str = "") -> dict[str, Any]:
    resp = w.get(who, f"/api/v1/notifications{query}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _post_many(w: World, who: str, n: int, kind: str = "reminder") -> None:
    with Session(w.engine) as s:
        for i in range(n):
            inbox.post(s, user_ids=[w.actors[who].user_id], kind=kind, title=f"第 {i} 条")
        s.commit()


def test_paging_filters_and_read_all(world: World) -> None:
    w = world
    _post_many(w, "sec_s1", 25)
    _post_many(w, "sec_s1", 3, kind="overdue")
    first = _notices(w, "sec_s1", "?status=all&limit=20")
    assert first["total"] == 28 and len(first["items"]) == 20 and first["unread"] == 28
    second = _notices(w, "sec_s1", "?status=all&limit=20&offset=20")
    assert len(second["items"]) == 8
    assert not {i["id"] for i in first["items"]} & {i["id"] for i in second["items"]}
    overdue = _notices(w, "sec_s1", "?kind=overdue")
    assert overdue["total"] == 3 and {i["kind"] for i in overdue["items"]} == {"overdue"}
    assert _notices(w, "sec_s1")["total"] == 28  # no parameter: all, as before
    bad = w.get("sec_s1", "/api/v1/notifications?status=old")
    assert bad.status_code == 422 and "status" in bad.text

    one = first["items"][0]["id"]
    assert w.post("sec_s1", f"/api/v1/notifications/{one}/read").status_code == 200
    assert _notices(w, "sec_s1", "?status=unread")["total"] == 27
    _post_many(w, "sec_s2", 2)  # someone else's: untouched
    done = w.post("sec_s1", "/api/v1/notifications/read-all")
    assert done.status_code == 200 and done.json() == {"count": 27}
    assert _notices(w, "sec_s1", "?status=unread")["total"] == 0
    assert _notices(w, "sec_s1", "?status=all")["total"] == 28
    assert _notices(w, "sec_s2", "?status=unread")["total"] == 2
    assert w.post("sec_s1", "/api/v1/notifications/read-all").json() == {"count": 0}


def test_another_users_notice_is_404(world: World) -> None:
    w = world
    _post_many(w, "sec_s2", 1)
    theirs = _notices(w, "sec_s2")["items"][0]["id"]
    resp = w.post("sec_s1", f"/api/v1/notifications/{theirs}/read")
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    page = web_user(w.client.app, "sec_s1")
    assert page.post(f"/notices/{theirs}/read", {}).status_code == 404
    assert _notices(w, "sec_s2", "?status=unread")["total"] == 1


def _pending_for(w: World, who: str, request_id: int) -> list[dict[str, Any]]:
    items = _notices(w, who, "?status=all")["items"]
    return [i for i in items if i["request_id"] == request_id and i["kind"] == "request_submitted"]


def test_a_decided_request_resolves_its_approval_notices(world: World) -> None:
    w = world
    req = _submit(w)
    mine = _pending_for(w, "com_g1", req)
    assert len(mine) == 1 and mine[0]["resolved_at"] is None
    assert mine[0]["link"] == f"/approvals#request-{req}"
    assert "http" not in mine[0]["body"]  # the body no longer ends in a raw URL
    assert _notices(w, "com_g1", "?status=unread")["unread"] == 1

    resp = w.post("com_g1", f"/api/v1/requests/{req}/approve", json={"opinion": "同意"})
    assert resp.status_code == 200, resp.text
    after = _pending_for(w, "com_g1", req)[0]
    assert after["resolved_at"] is not None and after["read_at"] is None
    assert after["link"] == f"/runs/{w.runs['S1']}"  # done: it opens the run, not the inbox
    assert _notices(w, "com_g1", "?status=unread")["total"] == 0
    # The other committee member of G1 ("dual") had the same notice: resolved too.
    assert all(i["resolved_at"] for i in _pending_for(w, "dual", req))
    # The branch's own notice of the approval is news, not a task: it stays unread.
    _relay(w)
    approved = _notices(w, "sec_s1", "?status=unread&kind=request_approved")
    assert approved["total"] == 1 and approved["items"][0]["link"] == f"/runs/{w.runs['S1']}"


def test_a_withdrawn_request_resolves_its_notices_and_a_late_one_is_born_resolved(
    world: World,
) -> None:
    w = world
    req = _submit(w)
    assert w.post("sec_s1", f"/api/v1/requests/{req}/withdraw").status_code == 200
    assert all(i["resolved_at"] for i in _pending_for(w, "com_g1", req))
    # A request decided before the relay ran: its 待审批 notice arrives already resolved.
    run_id = w.runs["S2"]
    w.post("sec_s2", f"/api/v1/runs/{run_id}/evidence", json={"kind": "meeting", "data": MEETING})
    late = w.post("sec_s2", f"/api/v1/runs/{run_id}/requests", json={}).json()["id"]
    assert w.post("sec_s2", f"/api/v1/requests/{late}/withdraw").status_code == 200
    _relay(w)
    born = _pending_for(w, "com_g1", late)
    assert len(born) == 1 and born[0]["resolved_at"] is not None
    assert _notices(w, "com_g1", "?status=unread&kind=request_submitted")["total"] == 0


def test_overdue_notices_resolve_when_the_stage_is_left(world: World) -> None:
    w = world
    run_id = w.runs["S1"]
    with Session(w.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None and run.deadline is not None
        as_of = run.deadline + timedelta(days=3)
    jobs.sweep(w.engine, "deadline_sweep", as_of)
    _relay(w)
    overdue = _notices(w, "sec_s1", "?kind=overdue")
    assert overdue["total"] >= 1 and overdue["items"][0]["link"] == f"/runs/{run_id}"
    assert all(i["resolved_at"] is None for i in overdue["items"])
    req = _submit(w)
    assert w.post("com_g1", f"/api/v1/requests/{req}/approve", json={}).status_code == 200
    with Session(w.engine) as s:
        left = list(
            s.execute(
                select(InboxItem).where(
                    InboxItem.run_id == run_id, col(InboxItem.kind) == "overdue"
                )
            ).scalars()
        )
    assert left and all(i.resolved_at is not None for i in left)
    assert _notices(w, "sec_s1", "?status=unread&kind=overdue")["total"] == 0
    # Another branch's overdue notices are still owed.
    other = w.runs["S2"]
    with Session(w.engine) as s:
        still = (
            s.execute(
                select(InboxItem).where(InboxItem.run_id == other, col(InboxItem.kind) == "overdue")
            )
            .scalars()
            .all()
        )
    assert still and all(i.resolved_at is None for i in still)


def test_the_centre_page_pages_filters_and_marks(world: World) -> None:
    w = world
    _post_many(w, "sec_s1", 23)
    _post_many(w, "sec_s1", 2, kind="overdue")
    page = web_user(w.client.app, "sec_s1")
    first = page.get("/notices").text
    assert first.count('data-notice-id="') == 20 and "第 1 / 2 页" in first and "下一页" in first
    second = page.get("/notices?status=all&page=2").text
    assert second.count('data-notice-id="') == 5 and "上一页" in second
    assert page.get("/notices?kind=overdue").text.count('data-notice-id="') == 2
    resp = page.post("/notices/read-all", {"next": "/notices?status=unread"})
    assert resp.status_code == 303 and resp.headers["location"] == "/notices?status=unread"
    unread = page.get("/notices?status=unread").text
    assert 'data-notice-id="' not in unread and "没有未读消息" in unread
    assert page.get("/notices").text.count('data-state="已读"') == 20
    # An outside `next` is not followed.
    assert (
        page.post("/notices/read-all", {"next": "https://evil.example/"}).headers["location"]
        == "/#notices"
    )


def test_the_desk_shows_unread_with_links_and_the_centre(world: World) -> None:
    w = world
    req = _submit(w)
    page = web_user(w.client.app, "com_g1")
    desk = page.get("/").text
    assert f'href="/approvals#request-{req}"' in desk and "去审批" in desk
    assert 'href="/notices"' in desk and "全部标为已读" in desk
    assert "http://127.0.0.1:8000" not in desk
    with Session(w.engine) as s:
        inbox.post(
            s, user_ids=[w.actors["com_g1"].user_id], kind="reminder", title="<script>x</script>"
        )
        s.commit()
    assert "&lt;script&gt;x&lt;/script&gt;" in page.get("/").text


def test_a_bulletin_notice_opens_the_full_bulletin(world: World) -> None:
    from states import bulletins

    w = world
    with Session(w.engine) as s:
        run = s.get(Run, w.runs["S1"])
        assert run is not None and run.deadline is not None
        as_of = run.deadline + timedelta(days=30)
        s.commit()
    with Session(w.engine) as s:
        bulletins.publish(s, w.campaign_id, as_of)
        s.commit()
    _relay(w)
    items = _notices(w, "com_h1", "?kind=bulletin")["items"]
    assert items and items[0]["link"].startswith("/bulletins/")
    page = web_user(w.client.app, "com_h1")
    full = page.get(items[0]["link"])
    assert full.status_code == 200 and "通报名单" in full.text
    centre = page.get("/notices?kind=bulletin").text
    assert "查看全文" in centre
    # A secretary below cannot open the committee's bulletin.
    assert web_user(w.client.app, "sec_s4").get(items[0]["link"]).status_code == 404


def test_the_centre_on_a_phone(live_world: LiveWorld, browser: Any) -> None:
    w = live_world.world
    _post_many(w, "com_g1", 21)
    req = _submit(w, "sec_s2", "S2")  # the newest: on the first page
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    try:
        login(page, live_world.base_url, "com_g1")
        page.goto(live_world.url("/notices"))
        shot(page, "notice_centre_phone")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"]
        buttons = page.locator(".notice-btn")
        for i in range(buttons.count()):
            box = buttons.nth(i).bounding_box()
            assert box is not None and box["height"] >= 44 and box["width"] >= 44
        page.get_by_role("link", name="下一页").click()
        assert "第 2 / 2 页" in page.content()
        page.goto(live_world.url("/notices?status=unread"))
        page.locator(f'[data-notice-id] a[href="/approvals#request-{req}"]').first.click()
        assert "/approvals" in page.url
        page.goto(live_world.url("/notices?status=unread"))
        assert "未读 22 条" in page.content()
        first = page.locator("[data-notice-id]").first.get_attribute("data-notice-id")
        page.locator("[data-notice-id] button", has_text="标为已读").first.click()
        assert "未读 21 条" in page.content()
        assert page.locator(f'[data-notice-id="{first}"]').count() == 0
        page.get_by_role("button", name="全部标为已读").click()
        assert "没有未读消息" in page.content()
        shot(page, "notice_centre_phone_read")
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto(live_world.url("/notices?status=all"))
        shot(page, "notice_centre_desktop")
    finally:
        context.close()

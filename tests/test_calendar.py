"""Personal deadline feeds: the address, what a feed lists, a moved deadline, revocation.

The world's campaign (tests/api_world.py) runs in S1, S2 (under G1), S3 (under H1) and S4 (under
H2, the sibling subtree). Feeds are parsed with the `icalendar` library, as a client would.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from icalendar import Calendar
from sqlalchemy import update
from sqlmodel import Session, col

from states.models import Request, User
from states.supervision.models import Finding
from tests.api_world import World
from tests.browser import PHONE, LiveWorld, csrf_of, login, shot, web_user

if TYPE_CHECKING:
    from playwright.sync_api import Page

URL = "/api/v1/me/calendar"


def feed_path(w: World, who: str) -> str:
    resp = w.get(who, URL)
    assert resp.status_code == 200, resp.text
    url = resp.json()["url"]
    assert url.startswith("http://testserver/calendar/") and url.endswith(".ics")
    return urlsplit(url).path


def parse(w: World, path: str) -> Calendar:
    resp = w.client.get(path)  # no login: the token is the credential
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/calendar")
    return Calendar.from_ical(resp.content)


def run_events(cal: Calendar) -> dict[int, Any]:
    """Run id -> its stage-deadline event (the URL names the run page)."""
    out = {}
    for ev in cal.walk("VEVENT"):
        if str(ev["UID"]).startswith("run-"):
            out[int(str(ev["URL"]).rsplit("/", 1)[1])] = ev
    return out


def test_the_address_is_stable_and_the_feed_parses(world: World) -> None:
    w = world
    path = feed_path(w, "sec_s1")
    assert feed_path(w, "sec_s1") == path  # created once, then the same
    cal = parse(w, path)
    assert str(cal["X-WR-CALNAME"]).startswith("党建活动截止日期")
    assert cal.walk("VTIMEZONE")[0]["TZID"] == "Asia/Shanghai"
    events = run_events(cal)
    assert list(events) == [w.runs["S1"]]
    ev = events[w.runs["S1"]]
    run = w.get("sec_s1", f"/api/v1/runs/{w.runs['S1']}").json()
    start = ev.decoded("DTSTART")
    assert str(start.tzinfo) == "Asia/Shanghai"
    assert start.isoformat() == run["deadline"]
    assert str(ev["URL"]) == f"http://testserver/runs/{w.runs['S1']}"
    assert "宣传发动" in str(ev["SUMMARY"]) and str(ev["URL"]) in str(ev["DESCRIPTION"])
    assert ev.decoded("DTSTAMP") == ev.decoded("LAST-MODIFIED")


def test_each_user_sees_only_the_runs_in_reach(world: World) -> None:
    w = world
    seen = {who: set(run_events(parse(w, feed_path(w, who)))) for who in PEOPLE_REACH}
    for who, codes in PEOPLE_REACH.items():
        assert seen[who] == {w.runs[c] for c in codes}, who
    # Every user has a feed of her own.
    assert len({feed_path(w, who) for who in PEOPLE_REACH}) == len(PEOPLE_REACH)


PEOPLE_REACH = {
    "sec_s1": ("S1",),
    "com_g1": ("S1", "S2"),
    "com_h1": ("S1", "S2", "S3"),
    "admin_h2": ("S4",),
    "sec_s4": ("S4",),
}


def test_a_granted_extension_moves_the_same_event(world: World) -> None:
    w = world
    run_id, path = w.runs["S2"], feed_path(w, "sec_s2")
    before = run_events(parse(w, path))[run_id]
    old = before.decoded("DTSTART")
    new = (old + timedelta(days=10)).replace(microsecond=0)
    body = {"new_deadline": new.isoformat(), "reason": "人员外出"}
    resp = w.post("sec_s2", f"/api/v1/runs/{run_id}/extensions", json=body)
    assert resp.status_code == 201, resp.text
    request_id = resp.json()["id"]
    # The approver's feed shows the request, due at its SLA.
    pending = [
        ev
        for ev in parse(w, feed_path(w, "com_g1")).walk("VEVENT")
        if str(ev["UID"]).startswith(f"request-{request_id}-")
    ]
    assert len(pending) == 1 and "待审批" in str(pending[0]["SUMMARY"])
    assert pending[0].decoded("DTSTART") > datetime.now(UTC)
    assert w.post("com_g1", f"/api/v1/requests/{request_id}/approve", json={}).status_code == 200
    after = run_events(parse(w, path))[run_id]
    assert after["UID"] == before["UID"]
    assert after.decoded("DTSTART") == new != old
    assert int(after["SEQUENCE"]) > int(before["SEQUENCE"])
    # LAST-MODIFIED (whole seconds) is when the extension was granted.
    with Session(w.engine) as s:
        granted = s.get(Request, request_id)
        assert granted is not None and granted.decided_at is not None
        decided = granted.decided_at.replace(microsecond=0)
    assert after.decoded("LAST-MODIFIED") == decided >= before.decoded("LAST-MODIFIED")
    assert f"request-{request_id}-" not in parse(w, feed_path(w, "com_g1")).to_ical().decode()


def test_open_findings_are_listed_with_their_due_date(world: World) -> None:
    w = world
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(days=20)
    with Session(w.engine) as s:
        for status in ("open", "closed"):
            s.add(
                Finding(
                    org_id=w.orgs["S2"].id or 0,
                    run_id=w.runs["S2"],
                    text=f"整改：{status}",
                    due=due,
                    status=status,
                    created_by=w.actors["com_h1"].user_id,
                )
            )
        s.commit()

    def findings(who: str) -> list[Any]:
        cal = parse(w, feed_path(w, who))
        return [e for e in cal.walk("VEVENT") if str(e["UID"]).startswith("finding-")]

    (event,) = findings("com_g1")
    assert event.decoded("DTSTART") == due and "整改：open" in str(event["DESCRIPTION"])
    assert str(event["URL"]).endswith(f"/runs/{w.runs['S2']}")
    assert findings("sec_s1") == [] and findings("admin_h2") == []


def test_a_replaced_or_forged_address_is_404(world: World) -> None:
    w = world
    old = feed_path(w, "sec_s1")
    resp = w.post("sec_s1", URL + "/reset")
    assert resp.status_code == 200, resp.text
    new = urlsplit(resp.json()["url"]).path
    assert new != old and feed_path(w, "sec_s1") == new
    assert w.client.get(old).status_code == 404
    assert parse(w, new)
    token = new.removeprefix("/calendar/").removesuffix(".ics")
    for bad in (token[:-1] + ("A" if token[-1] != "A" else "B"), token[:20], "x.y"):
        assert w.client.get(f"/calendar/{bad}.ics").status_code == 404
    # Another kind's token with the same nonce is refused (bound to its kind).
    from states.public_links import nonce_of, token_for

    nonce = nonce_of("calendar", token)
    assert nonce is not None
    assert w.client.get(f"/calendar/{token_for('board', nonce)}.ics").status_code == 404


def test_a_deactivated_users_feed_is_404(world: World) -> None:
    w = world
    path = feed_path(w, "sec_s1")
    with Session(w.engine) as s:
        s.execute(
            update(User).where(col(User.id) == w.actors["sec_s1"].user_id).values(is_active=False)
        )
        s.commit()
    assert w.client.get(path).status_code == 404


def test_an_unchanged_feed_answers_304(world: World) -> None:
    w = world
    path = feed_path(w, "com_h1")
    first = w.client.get(path)
    etag = first.headers["etag"]
    again = w.client.get(path, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert w.client.get(path).content == first.content  # the same bytes while nothing changes


def test_no_login_no_address(world: World) -> None:
    w = world
    assert w.client.get(URL).status_code == 401
    assert w.client.post(URL + "/reset").status_code == 401


def test_the_settings_page_shows_copies_and_replaces_the_address(world: World) -> None:
    w = world
    path = feed_path(w, "sec_s1")
    user = web_user(w.client.app, "sec_s1")
    assert 'href="/account/calendar"' in user.client.get("/account").text
    page = user.client.get("/account/calendar")
    assert page.status_code == 200
    assert f'value="http://testserver{path}"' in page.text
    assert "<svg" in page.text and 'id="copy-url"' in page.text
    assert f'href="webcal://testserver{path}"' in page.text
    token = csrf_of(page.text)
    resp = user.client.post(
        "/account/calendar/reset", data={"csrf_token": token}, follow_redirects=False
    )
    assert resp.status_code == 303
    assert w.client.get(path).status_code == 404
    assert feed_path(w, "sec_s1") != path
    # Without the CSRF token nothing changes.
    current = feed_path(w, "sec_s1")
    assert user.client.post("/account/calendar/reset", data={}).status_code == 403
    assert feed_path(w, "sec_s1") == current


def test_the_settings_page_in_chromium_copies_the_address(
    live_world: LiveWorld, page: Page
) -> None:
    """From 我的账号 to the feed's page on a phone-sized screen; 复制地址 puts it on the clipboard."""
    page.context.grant_permissions(
        ["clipboard-read", "clipboard-write"], origin=live_world.base_url
    )
    page.set_viewport_size(PHONE)
    login(page, live_world.base_url, "com_g1")
    page.goto(live_world.url("/account"))
    page.click("#calendar-feed a")
    page.wait_for_url("**/account/calendar")
    url = page.input_value("#feed-url")
    assert url.startswith(live_world.base_url + "/calendar/") and url.endswith(".ics")
    assert page.locator(".cal-qr svg").is_visible()
    page.click("#copy-url")
    page.wait_for_selector("#copy-done:not([hidden])")
    assert page.evaluate("navigator.clipboard.readText()") == url
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width  # nothing overflows a phone's screen
    shot(page, "calendar-settings-phone")
    # The address opens the feed with no session at all.
    feed = page.context.request.get(url)
    assert feed.status == 200 and b"BEGIN:VCALENDAR" in feed.body()
    page.click("#reset-form button")
    page.wait_for_selector(".flash")
    assert page.input_value("#feed-url") != url
    assert page.context.request.get(url).status == 404

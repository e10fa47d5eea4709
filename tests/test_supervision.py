"""The supervision group (督导组), on SQLite and PostgreSQL: supervisors receive escalations from
level 2 in their subtree; findings (督导意见) with a deadline are reminded, escalated, answered
and closed; a 通报 reaches the subtree's inboxes and robots, and a 通报 naming anything outside
reach is refused as not found with nothing written or sent.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlmodel import Session, col

from notifications import relay
from notifications.recipients import resolve
from notifications.render import render_notice
from states.models import InboxItem, OutboxMessage, Role, Run
from states.notice_settings import ChannelSpec, add_channel
from states.supervision import sweep
from states.supervision.models import Circular, CircularItem, Finding
from states.timeutil import local_date, utcnow
from states.tokens import issue_token
from tests.api_world import World
from tests.browser import web_user
from tests.factories import make_user
from tests.stand_ins import RobotServer
from workflows import jobs

SUPERVISORS = {
    "sup_b": (("B", Role.SUPERVISOR),),
    "sup_h1": (("H1", Role.SUPERVISOR),),
    "sup_h2": (("H2", Role.SUPERVISOR),),
}


@pytest.fixture
def w(world: World) -> World:
    with Session(world.engine, expire_on_commit=False) as s:
        for name, grants in SUPERVISORS.items():
            world.actors[name] = make_user(s, name, *grants)
            token = issue_token(s, world.actors[name].user_id).token
            world.tokens[name] = {"Authorization": "Bearer " + token}
        s.commit()
    return world


def _place(w: World, code: str, days_ago: float) -> None:
    deadline = utcnow() - timedelta(days=days_ago)
    with Session(w.engine) as s:
        s.execute(
            update(Run)
            .where(col(Run.id) == w.runs[code])
            .values(deadline=deadline, entered_at=deadline - timedelta(days=14))
        )
        s.commit()


def _outbox(w: World, kind: str) -> list[OutboxMessage]:
    with Session(w.engine, expire_on_commit=False) as s:
        stmt = select(OutboxMessage).where(col(OutboxMessage.event_kind) == kind)
        return list(s.execute(stmt.order_by(col(OutboxMessage.id))).scalars())


def _audience(w: World, msg: OutboxMessage) -> set[str]:
    with Session(w.engine) as s:
        users = resolve(s, [msg])[msg.id or 0].users
    names = {a.user_id: n for n, a in w.actors.items()}
    return {names[u] for u in users if u in names}


def _inbox(w: World, username: str, kind: str) -> list[InboxItem]:
    with Session(w.engine, expire_on_commit=False) as s:
        stmt = select(InboxItem).where(
            col(InboxItem.user_id) == w.actors[username].user_id, col(InboxItem.kind) == kind
        )
        return list(s.execute(stmt).scalars())


def _due(days: int) -> str:
    return (local_date(utcnow()) + timedelta(days=days)).isoformat()


# --- supervisors on the overdue ladder ----------------------------------------------------------


def test_supervisors_get_level_two_escalations_in_their_subtree_and_not_level_one(w: World) -> None:
    _place(w, "S1", 30)  # far past: level 2 and more
    _place(w, "S3", 1.2)  # a day past: level 1
    jobs.sweep(w.engine, "deadline_sweep", utcnow())
    by_run = {m.run_id: m for m in _outbox(w, "overdue")}
    high, low = by_run[w.runs["S1"]], by_run[w.runs["S3"]]
    assert high.payload["level"] >= 2 and low.payload["level"] == 1
    assert {"sup_b", "sup_h1"} <= _audience(w, high)
    assert "sup_h2" not in _audience(w, high)  # the sibling subtree's supervisor
    assert not {"sup_b", "sup_h1", "sup_h2"} & _audience(w, low)
    relay.drain(w.engine, env={})
    assert _inbox(w, "sup_h1", "overdue") and not _inbox(w, "sup_h2", "overdue")


# --- findings --------------------------------------------------------------------------------


def test_a_finding_is_reminded_escalated_answered_and_closed(w: World) -> None:
    r = w.post(
        "sup_h1",
        f"/api/v1/runs/{w.runs['S1']}/findings",
        json={"text": "会议记录不全", "due": _due(2)},
    )
    assert r.status_code == 201, r.text
    finding = r.json()
    assert finding["status"] == "open" and finding["org"]["code"] == "S1"
    (issued,) = _outbox(w, "finding_issued")
    assert _audience(w, issued) == {"sec_s1", "dual"}

    now = utcnow()
    jobs.sweep(w.engine, "deadline_sweep", now)  # due in 2 days: the reminder
    jobs.sweep(w.engine, "deadline_sweep", now)  # once, ever
    (reminder,) = _outbox(w, "finding_reminder")
    assert _audience(w, reminder) == {"sec_s1", "dual"}
    assert not _outbox(w, "finding_overdue")

    jobs.sweep(w.engine, "deadline_sweep", now + timedelta(days=3, hours=1))  # level 1
    (one,) = _outbox(w, "finding_overdue")
    assert one.payload["level"] == 1
    assert _audience(w, one) == {"sec_s1", "dual", "com_g1", "sup_h1"}
    later = now + timedelta(days=7)
    report = jobs.sweep(w.engine, "deadline_sweep", later)  # level 2: supervisors above too
    assert report.counts.get("finding_overdue") == 1
    two = _outbox(w, "finding_overdue")[-1]
    assert two.payload["level"] == 2
    assert {"sup_b", "sup_h1", "sec_s1", "com_g1"} <= _audience(w, two)
    assert "sup_h2" not in _audience(w, two)
    assert "第 2 级督办" in render_notice("finding_overdue", two.payload)[0].text

    fid = finding["id"]
    r = w.post("sec_s2", f"/api/v1/findings/{fid}/response", json={"text": "已整改"})
    assert r.status_code == 404  # another branch's secretary
    r = w.post("sec_s1", f"/api/v1/findings/{fid}/response", json={"text": "已补齐会议记录"})
    assert r.status_code == 200 and r.json()["status"] == "answered"
    (answered,) = _outbox(w, "finding_answered")
    assert _audience(w, answered) == {"sup_h1"}
    jobs.sweep(w.engine, "deadline_sweep", later + timedelta(days=10))  # answered: no more
    assert len(_outbox(w, "finding_overdue")) == 2

    assert w.post("sec_s1", f"/api/v1/findings/{fid}/close").status_code == 403
    r = w.post("sup_h1", f"/api/v1/findings/{fid}/close")
    assert r.status_code == 200 and r.json()["status"] == "closed"
    again = w.post("sec_s1", f"/api/v1/findings/{fid}/response", json={"text": "再次回复"})
    assert again.status_code == 409 and again.json()["details"]["rule"] == "finding_closed"


def test_a_finding_on_an_organisation_and_its_bad_input(w: World) -> None:
    g1 = w.orgs["G1"].id
    r = w.post(
        "sup_b", f"/api/v1/orgs/{g1}/findings", json={"text": "组织生活不规范", "due": _due(5)}
    )
    assert r.status_code == 201 and r.json()["run_id"] is None
    (issued,) = _outbox(w, "finding_issued")
    assert _audience(w, issued) == {"com_g1", "dual"}
    past = w.post("sup_b", f"/api/v1/orgs/{g1}/findings", json={"text": "x", "due": _due(-1)})
    assert past.status_code == 422 and past.json()["details"]["field"] == "due"
    blank = w.post("sup_b", f"/api/v1/orgs/{g1}/findings", json={"text": "  ", "due": _due(1)})
    assert blank.status_code == 422
    # Leaders who are not supervisors may not record findings.
    assert (
        w.post(
            "com_h1", f"/api/v1/orgs/{g1}/findings", json={"text": "x", "due": _due(1)}
        ).status_code
        == 403
    )
    listed = w.get("sup_b", "/api/v1/findings?open=true").json()
    assert listed["total"] == 1 and listed["items"][0]["org"]["code"] == "G1"
    assert w.get("sup_h2", "/api/v1/findings").json()["total"] == 0


def test_foreign_ids_are_not_found_and_write_nothing(w: World) -> None:
    body = {"text": "意见", "due": _due(3)}
    assert w.post("sup_h2", f"/api/v1/runs/{w.runs['S1']}/findings", json=body).status_code == 404
    assert (
        w.post("sup_h2", f"/api/v1/orgs/{w.orgs['S1'].id}/findings", json=body).status_code == 404
    )
    assert w.post("sup_h1", "/api/v1/runs/999999/findings", json=body).status_code == 404
    fid = w.post("sup_h1", f"/api/v1/orgs/{w.orgs['S1'].id}/findings", json=body).json()["id"]
    for user in ("sup_h2", "sec_s4", "admin_h2"):
        assert w.get(user, f"/api/v1/findings/{fid}").status_code == 404
        r = w.post(user, f"/api/v1/findings/{fid}/response", json={"text": "x"})
        assert r.status_code == 404
        assert w.post(user, f"/api/v1/findings/{fid}/close").status_code == 404
    with Session(w.engine) as s:
        assert s.execute(select(func.count()).select_from(Finding)).scalar_one() == 1
        assert s.get(Finding, fid).status == "open"  # type: ignore[union-attr]


# --- 通报 --------------------------------------------------------------------------------------


def _circular_body(w: World, *codes: str) -> dict:
    return {
        "title": "关于第一医院整改情况的通报",
        "text": "督导组检查发现以下单位存在问题，现予通报。",
        "orgs": [{"org_id": w.orgs[c].id, "reason": f"{c} 会议记录缺失"} for c in codes],
    }


def test_a_circular_reaches_the_subtree_inboxes_and_robots(w: World) -> None:
    with RobotServer("webhook") as h1_hook, RobotServer("webhook") as h2_hook:
        with Session(w.engine) as s:
            add_channel(s, s.merge(w.orgs["S1"]), ChannelSpec(kind="webhook", url=h1_hook.url))
            add_channel(s, s.merge(w.orgs["S4"]), ChannelSpec(kind="webhook", url=h2_hook.url))
            s.commit()
        r = w.post(
            "sup_h1", f"/api/v1/orgs/{w.orgs['H1'].id}/notices", json=_circular_body(w, "S1", "S2")
        )
        assert r.status_code == 201, r.text
        circ = r.json()
        assert [o["org"]["code"] for o in circ["orgs"]] == ["S1", "S2"]
        relay.drain(w.engine, env={})
        assert len(h1_hook.accepted()) == 1 and not h2_hook.accepted()
        sent = h1_hook.accepted()[0].json
        assert "关于第一医院整改情况的通报" in sent["title"]
        assert sent["link"].endswith(f"/circulars/{circ['id']}")
    for user in ("sec_s1", "sec_s2", "com_g1", "com_h1", "dual"):
        (item,) = _inbox(w, user, "circular")
        assert "内科第一党支部：S1 会议记录缺失" in item.body
    for user in ("sec_s4", "admin_h2", "org_b"):  # outside the subtree, or not a leader
        assert not _inbox(w, user, "circular")
    assert w.get("sec_s1", f"/api/v1/circulars/{circ['id']}").status_code == 200
    assert w.get("sec_s4", f"/api/v1/circulars/{circ['id']}").status_code == 404


@pytest.mark.parametrize(
    ("user", "org", "codes"),
    [
        ("sup_h1", "H1", ("S1", "S4")),  # S4 is outside H1 and outside reach
        ("sup_h1", "G1", ("S1", "S3")),  # S3 is in reach but outside G1's subtree
        ("sup_h1", "H2", ("S4",)),  # the whole subtree outside reach
        ("sup_h2", "H1", ("S1",)),
    ],
)
def test_a_circular_outside_reach_is_not_found_and_nothing_is_sent(
    w: World, user: str, org: str, codes: tuple[str, ...]
) -> None:
    r = w.post(user, f"/api/v1/orgs/{w.orgs[org].id}/notices", json=_circular_body(w, *codes))
    assert r.status_code == 404, r.text
    with Session(w.engine) as s:
        assert s.execute(select(func.count()).select_from(Circular)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(CircularItem)).scalar_one() == 0
    assert not _outbox(w, "circular")


def test_a_circular_needs_a_supervisor_and_valid_lists(w: World) -> None:
    h1 = w.orgs["H1"].id
    assert (
        w.post("com_h1", f"/api/v1/orgs/{h1}/notices", json=_circular_body(w, "S1")).status_code
        == 403
    )
    twice = _circular_body(w, "S1", "S1")
    r = w.post("sup_h1", f"/api/v1/orgs/{h1}/notices", json=twice)
    assert r.status_code == 422 and r.json()["details"]["field"] == "orgs"
    empty = {**_circular_body(w), "orgs": []}
    assert w.post("sup_h1", f"/api/v1/orgs/{h1}/notices", json=empty).status_code == 422
    assert not _outbox(w, "circular")


def test_finding_levels_are_computed_from_the_due() -> None:
    due = utcnow()
    assert sweep.level_at(due, due) == 0
    assert sweep.level_at(due, due + timedelta(hours=1)) == 1
    assert sweep.level_at(due, due + sweep.LEVEL_STEP + timedelta(hours=1)) == 2
    assert sweep.level_at(due, due + timedelta(days=365)) == sweep.MAX_LEVEL


# --- pages -----------------------------------------------------------------------------------


def test_the_supervision_pages_record_answer_and_close_a_finding(w: World) -> None:
    sup = web_user(w.client.app, "sup_h1")
    desk = sup.get("/supervision")
    assert desk.status_code == 200 and 'id="new-finding"' in desk.text
    assert 'href="/supervision"' in desk.text  # 督导 in the top bar
    r = sup.post("/supervision/findings", {"org_code": "S1", "due": _due(4), "text": "台账不全"})
    assert r.status_code == 303 and r.headers["location"].startswith("/findings/")
    url = r.headers["location"]
    assert "台账不全" in sup.get(url).text
    sec = web_user(w.client.app, "sec_s1")
    assert 'id="new-finding"' not in sec.get("/supervision").text  # no forms for a secretary
    page = sec.get(url)
    assert page.status_code == 200 and 'name="response"' in page.text
    assert sec.post(url + "/response", {"response": "已补齐台账"}).status_code == 303
    assert "已补齐台账" in sup.get(url).text
    assert sup.post(url + "/close").status_code == 303
    closed = sec.get(url).text
    assert "已办结" in closed and 'name="response"' not in closed
    assert sec.post(url + "/response", {"response": "再次"}).status_code == 303  # refused, flashed
    with Session(w.engine) as s:
        (finding,) = s.execute(select(Finding)).scalars()
        assert finding.status == "closed" and finding.response == "已补齐台账"


def test_the_notice_form_issues_a_circular_or_refuses_it_whole(w: World) -> None:
    sup = web_user(w.client.app, "sup_h1")
    bad = {"org_code": "H1", "title": "通报", "text": "正文", "orgs": "S1 记录缺失\nS4 越权"}
    r = sup.post("/supervision/notices", bad)
    assert r.status_code == 303 and r.headers["location"] == "/supervision"
    assert not _outbox(w, "circular")
    good = {**bad, "orgs": "S1 记录缺失\nS3 学习不到位"}
    r = sup.post("/supervision/notices", good)
    assert r.status_code == 303 and r.headers["location"].startswith("/circulars/")
    page = web_user(w.client.app, "sec_s1").get(r.headers["location"])
    assert "记录缺失" in page.text and "第一医院机关党支部" in page.text
    (msg,) = _outbox(w, "circular")
    assert {"sec_s1", "sec_s2", "com_g1", "com_h1", "dual"} <= _audience(w, msg)


def test_foreign_finding_pages_are_not_found(w: World) -> None:
    body = {"text": "意见", "due": _due(3)}
    fid = w.post("sup_h1", f"/api/v1/orgs/{w.orgs['S1'].id}/findings", json=body).json()["id"]
    sibling = web_user(w.client.app, "sup_h2")
    assert sibling.get(f"/findings/{fid}").status_code == 404
    assert sibling.post(f"/findings/{fid}/response", {"response": "x"}).status_code == 404
    assert sibling.post(f"/findings/{fid}/close").status_code == 404
    desk = sibling.get("/supervision").text
    assert f'data-finding-id="{fid}"' not in desk

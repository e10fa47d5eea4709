"""The public 公示 board and its 意见箱, on SQLite and PostgreSQL: what it shows (masked or not),
who may publish and revoke, forged and revoked addresses, hostile messages and the rate limit."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import event, func, update
from sqlmodel import Session, col, select

from states.board import messages
from states.board.models import BoardHit, BoardMessage, PublicBoard
from states.members.models import Member
from states.models import Evidence, EvidenceLink, InboxItem, Run
from states.public_links import new_nonce, token_for
from states.survey.models import Survey, SurveyAnswer
from states.timeutil import utcnow
from tests.api_world import World
from tests.browser import web_user
from tests.test_api_matrix import snapshot

PHONE = "13800138000"


def _record(w: World, code: str, kind: str, data: dict[str, Any], status: str = "active") -> None:
    """An evidence record counted for the run of `code` (as the recording services leave it)."""
    with Session(w.engine) as s:
        run = s.get(Run, w.runs[code])
        assert run is not None
        ev = Evidence(
            org_id=run.org_id, run_id=run.id, stage=run.stage, kind=kind, data=data, status=status
        )
        s.add(ev)
        s.flush()
        s.add(EvidenceLink(evidence_id=ev.id or 0, run_id=run.id or 0, stage=run.stage))
        s.commit()


def _member(w: World, name: str) -> int:
    with Session(w.engine) as s:
        m = Member(
            org_id=w.orgs["S1"].id or 0,
            name=name,
            category="正式党员",
            joined_on=date(2010, 7, 1),
            phone=PHONE,
        )
        s.add(m)
        s.commit()
        return m.id or 0


def _content(w: World) -> None:
    """S1's commitments (roster member, typed member, branch, one voided) and activities."""
    member_id = _member(w, "张三丰")
    _record(w, "S1", "commitment", {"member_id": member_id, "text": "每月走访困难群众"})
    _record(w, "S1", "commitment", {"member": "李四", "text": "带头学习"})
    _record(w, "S1", "commitment", {"text": "支部承诺：办好十件实事"})
    _record(w, "S1", "commitment", {"member": "王五", "text": "作废的承诺"}, status="void")
    _record(
        w,
        "S1",
        "activity",
        {
            "heading": "服务群众",
            "date": "2026-11-02",
            "title": "义诊进社区",
            "description": "60 人",
        },
    )


def _publish(w: World, who: str = "sec_s1", **body: Any) -> Any:
    return w.post(who, f"/api/v1/runs/{w.runs['S1']}/board", json={"mask_names": True, **body})


def _leave(w: World, path: str, **form: str) -> Any:
    """Post a message to a board's 意见箱 (the 303 is not followed)."""
    return w.client.post(path, data=form, follow_redirects=False)


def _path(url: str) -> str:
    return "/b/" + url.rsplit("/b/", 1)[1]


def test_a_masked_board_shows_what_was_chosen_and_nothing_else(world: World) -> None:
    w = world
    _content(w)
    resp = _publish(w)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["url"].startswith("http://testserver/b/") and out["created"] is True
    page = w.client.get(_path(out["url"]))
    assert page.status_code == 200
    html = page.text
    for shown in ("张*", "李*", "每月走访困难群众", "带头学习", "支部承诺：办好十件实事"):
        assert shown in html, shown
    for hidden in ("张三丰", "李四", "王五", "作废的承诺", PHONE, "sec_s1"):
        assert hidden not in html, hidden
    assert "义诊进社区" in html and "服务群众" in html and "2026-11-02" in html
    assert "上级点评" not in html and "群众评议结果" not in html
    assert "在册党员 1 人" in html
    # Public conventions: noindex, no asset, no script, its own QR code, printable.
    assert page.headers["x-robots-tag"].startswith("noindex")
    assert '<meta name="robots" content="noindex' in html
    assert "<script" not in html and "src=" not in html and "<link" not in html
    assert "<svg" in html and out["url"] in html and "@media print" in html
    assert "发布于" in html and "公示期至另行通知" in html


def test_publishing_again_keeps_the_address_and_takes_the_new_choice(world: World) -> None:
    w = world
    _content(w)
    first = _publish(w).json()
    again = _publish(w, "org_h1", mask_names=False, until=str(date.today() + timedelta(days=30)))
    assert again.status_code == 200, again.text
    assert again.json()["url"] == first["url"] and again.json()["created"] is False
    html = w.client.get(_path(first["url"])).text
    assert "张三丰" in html and "李四" in html and "张*" not in html
    assert PHONE not in html and "公示至" in html
    _record(
        w,
        "S1",
        "review",
        {"achievements": "成效明显", "problems": "台账不全", "direction": "常态化"},
    )
    html = w.client.get(_path(first["url"])).text
    assert "上级点评" in html and "台账不全" in html


def test_who_may_publish_and_a_foreign_run_id_everywhere(world: World) -> None:
    w = world
    run_id, campaign_id = w.runs["S1"], w.campaign_id
    sibling = web_user(w.client.app, "admin_h2")  # logging in writes a session: before the snapshot
    before = snapshot(w.engine)
    routes = [
        ("POST", f"/api/v1/runs/{run_id}/board", {"mask_names": True}),
        ("DELETE", f"/api/v1/runs/{run_id}/board", None),
        ("GET", f"/api/v1/runs/{run_id}/board", None),
        ("POST", f"/api/v1/campaigns/{campaign_id}/boards", {"org_id": w.orgs["H1"].id}),
    ]
    for who in ("admin_h2", "sec_s2", "sec_s4"):
        for method, url, body in routes:
            resp = w.client.request(method, url, json=body, headers=w.as_(who))
            assert resp.status_code == 404, (who, method, url, resp.text)
            assert resp.json()["code"] == "not_found"
    # In reach but not a publisher: a committee member (not an organiser) above the branch.
    assert _publish(w, "com_g1").status_code == 403
    assert w.post("sec_s1", f"/api/v1/runs/{run_id}/board", json={"bogus": 1}).status_code == 422
    yesterday = str(date.today() - timedelta(days=1))
    resp = _publish(w, until=yesterday)
    assert resp.status_code == 422 and resp.json()["details"][0]["field"] == "until"
    assert snapshot(w.engine) == before
    assert sibling.get(f"/runs/{run_id}/board").status_code == 404
    assert sibling.post(f"/runs/{run_id}/board", {"mask": "1"}).status_code == 404
    assert sibling.post(f"/runs/{run_id}/board/revoke").status_code == 404
    assert snapshot(w.engine) == before


def _queries_during(w: World, call: Any) -> tuple[Any, int]:
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(args[2])

    event.listen(w.engine, "before_cursor_execute", count)
    try:
        return call(), len(seen)
    finally:
        event.remove(w.engine, "before_cursor_execute", count)


def test_revoked_forged_and_truncated_addresses_are_the_404_page(world: World) -> None:
    w = world
    url = _publish(w).json()["url"]
    path = _path(url)
    token = path[3:]
    nonce = token.split(".")[0]
    unknown = token_for("board", new_nonce())  # genuine, but no such board
    for bad in (
        token[:-1],
        token + "A",
        "x" * len(token),
        nonce + "." + "A" * 16,
        token_for("survey", nonce),  # the same nonce signed for another kind
        unknown,
    ):
        resp, queries = _queries_during(w, lambda b=bad: w.client.get("/b/" + b))
        assert resp.status_code == 404 and "页面不存在" in resp.text, bad
        assert (queries > 0) == (bad == unknown), bad  # a forged one: refused before any query
        post, queries = _queries_during(
            w, lambda b=bad: w.client.post("/b/" + b, data={"message": "你好"})
        )
        assert post.status_code == 404 and (queries > 0) == (bad == unknown)
    assert w.client.request("DELETE", f"/api/v1/runs/{w.runs['S1']}/board").status_code == 401
    revoked = w.client.request(
        "DELETE", f"/api/v1/runs/{w.runs['S1']}/board", headers=w.as_("org_b")
    )
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert w.client.get(path).status_code == 404
    assert w.client.post(path, data={"message": "还在吗"}).status_code == 404
    again = w.client.request("DELETE", f"/api/v1/runs/{w.runs['S1']}/board", headers=w.as_("org_b"))
    assert again.status_code == 404
    fresh = _publish(w).json()["url"]
    assert fresh != url and w.client.get(_path(fresh)).status_code == 200
    assert w.client.get(path).status_code == 404
    with Session(w.engine) as s:
        assert s.execute(select(func.count()).select_from(BoardMessage)).scalar_one() == 0


def test_an_ended_board_says_so(world: World) -> None:
    w = world
    path = _path(_publish(w, until=str(date.today() + timedelta(days=3))).json()["url"])
    with Session(w.engine) as s:
        s.execute(update(PublicBoard).values(until=utcnow() - timedelta(seconds=1)))
        s.commit()
    resp = w.client.get(path)
    assert resp.status_code == 410 and "公示已结束" in resp.text
    assert w.orgs["S1"].name not in resp.text
    assert w.client.post(path, data={"message": "晚了"}).status_code == 410
    # No live board any more: publishing makes a new address.
    assert _path(_publish(w).json()["url"]) != path


def test_messages_are_escaped_refused_or_cleaned_and_reach_both_inboxes(world: World) -> None:
    w = world
    path = _path(_publish(w).json()["url"])
    script = "<script>alert(1)</script>意见"
    resp = _leave(w, path, message=script, contact="电话 1234")
    assert resp.status_code == 303 and resp.headers["location"].endswith("?sent=1#box")
    assert "留言已收到" in w.client.get(resp.headers["location"]).text
    rtl = w.client.post(path, data={"message": "好\u202eevil"})
    assert rtl.status_code == 422 and "改变文字方向" in rtl.text
    rtl = w.client.post(path, data={"message": "好", "contact": "\u2066x"})
    assert rtl.status_code == 422 and 'id="contact-error"' in rtl.text
    assert w.client.post(path, data={"message": "  "}).status_code == 422
    assert w.client.post(path, data={"message": "多" * 2001}).status_code == 422
    ok = _leave(w, path, message="第一行\x00\x07\n第二行\u200b")
    assert ok.status_code == 303
    with Session(w.engine) as s:
        stored = [m.message for m in s.execute(select(BoardMessage)).scalars()]
        assert stored == [script, "第一行\n第二行"]
        notices = s.execute(select(InboxItem).where(InboxItem.kind == "board_message")).scalars()
        users = {n.user_id for n in notices}
    expected = {w.actors[u].user_id for u in ("sec_s1", "dual", "com_g1")}
    assert users == expected  # the branch's and its parent's people, no one else
    notice = w.get("com_g1", "/api/v1/notifications", params={"kind": "board_message"}).json()
    assert notice["items"][0]["link"] == f"/runs/{w.runs['S1']}/board#messages"
    staff = web_user(w.client.app, "com_g1").get(f"/runs/{w.runs['S1']}/board")
    assert staff.status_code == 200
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;意见" in staff.text and "<script>" not in staff.text
    )
    assert "电话 1234" in staff.text
    listed = w.get("dual", f"/api/v1/runs/{w.runs['S1']}/board").json()
    assert listed["total"] == 2 and listed["messages"][0]["message"] == "第一行\n第二行"
    assert w.get("sec_s2", f"/api/v1/runs/{w.runs['S1']}/board").status_code == 404


def test_a_huge_message_is_refused_without_reading_it(world: World) -> None:
    w = world
    path = _path(_publish(w).json()["url"])
    for size in (100 * 1024, 1024 * 1024):
        resp = w.client.post(path, data={"message": "a" * size})
        assert resp.status_code == 413, size
    # Without a length up front the body is read only up to the limit.
    chunks = (b"message=" + b"a" * 8192 for _ in range(128))
    resp = w.client.post(
        path, content=chunks, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert resp.status_code == 413
    with Session(w.engine) as s:
        assert s.execute(select(func.count()).select_from(BoardMessage)).scalar_one() == 0


def test_one_address_is_stopped_after_the_hourly_limit(world: World) -> None:
    w = world
    path = _path(_publish(w).json()["url"])
    codes = [_leave(w, path, message=f"第 {i} 条").status_code for i in range(1000)]
    assert codes[: messages.HOURLY_LIMIT] == [303] * messages.HOURLY_LIMIT
    assert set(codes[messages.HOURLY_LIMIT :]) == {429}
    refused = w.client.post(path, data={"message": "再来"})
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
    with Session(w.engine) as s:
        count = s.execute(select(func.count()).select_from(BoardMessage)).scalar_one()
        assert count == messages.HOURLY_LIMIT
        hashes = [h.addr_hash for h in s.execute(select(BoardHit)).scalars()]
        assert len(hashes) == 1 and "testclient" not in hashes[0]
        assert hashes[0] == messages.address_hash("testclient")


def _survey(w: World, answers: int, closed: bool) -> None:
    with Session(w.engine) as s:
        run = s.get(Run, w.runs["S1"])
        assert run is not None
        survey = Survey(
            run_id=run.id or 0,
            stage=run.stage,
            org_id=run.org_id,
            questions=[{"key": "overall", "label": "总体评价"}],
            nonce=new_nonce(),
            opened_by=w.actors["sec_s1"].user_id,
            closed_at=utcnow() if closed else None,
        )
        s.add(survey)
        s.flush()
        for i in range(answers):
            rating = "不满意" if i == 0 else "满意"
            s.add(
                SurveyAnswer(
                    survey_id=survey.id or 0,
                    channel="paper" if i == 0 else "code",
                    receipt=f"R{survey.id}-{i}",
                    answers={"overall": rating},
                    comment="服务很好" if i == 1 else None,
                )
            )
        s.commit()


def test_appraisal_results_appear_only_once_closed_with_five_answers(world: World) -> None:
    w = world
    path = _path(_publish(w).json()["url"])
    _survey(w, 4, closed=True)
    _survey(w, 6, closed=False)
    assert "群众评议结果" not in w.client.get(path).text
    _survey(w, 5, closed=True)
    html = w.client.get(path).text
    assert "群众评议结果" in html and "80.0%" in html and "服务很好" in html
    assert "纸质录入 1 份" in html and "共收到 <strong>5</strong> 份评议" in html


def test_a_committee_publishes_every_branch_and_prints_the_codes(world: World) -> None:
    w = world
    h1 = w.orgs["H1"].id
    resp = w.post(
        "org_h1", f"/api/v1/campaigns/{w.campaign_id}/boards", json={"org_id": h1, "mask_names": 0}
    )
    assert resp.status_code == 200, resp.text
    boards = resp.json()["boards"]
    assert sorted(b["org_name"] for b in boards) == sorted(
        w.orgs[c].name for c in ("S1", "S2", "S3")
    )
    assert all(b["mask_names"] is False for b in boards)
    for b in boards:
        assert w.client.get(_path(b["url"])).status_code == 200
    printed = web_user(w.client.app, "org_h1").get(f"/campaigns/{w.campaign_id}/boards?org_id={h1}")
    assert printed.status_code == 200 and printed.text.count("<svg") == 3
    assert all(b["url"] in printed.text for b in boards)
    # A secretary cannot publish a committee's boards; nothing is written.
    before = snapshot(w.engine)
    resp = w.post("sec_s1", f"/api/v1/campaigns/{w.campaign_id}/boards", json={"org_id": h1})
    assert resp.status_code == 404
    assert snapshot(w.engine) == before


def test_the_staff_page_publishes_and_revokes(world: World) -> None:
    w = world
    run_id = w.runs["S1"]
    sec = web_user(w.client.app, "sec_s1")
    page = sec.get(f"/runs/{run_id}/board")
    assert page.status_code == 200 and 'id="no-board"' in page.text
    assert f'href="/runs/{run_id}/board"' in sec.get(f"/runs/{run_id}").text
    assert sec.post(f"/runs/{run_id}/board", {"mask": "1", "until": "明天"}).status_code == 422
    resp = sec.post(f"/runs/{run_id}/board", {"mask": "0", "until": ""})
    assert resp.status_code == 303
    page = sec.get(f"/runs/{run_id}/board").text
    with Session(w.engine) as s:
        board = s.execute(select(PublicBoard)).scalar_one()
        assert board.mask_names is False and board.until is None
    url = "http://testserver/b/" + token_for("board", board.nonce)
    assert url in page and "<svg" in page
    viewer = web_user(w.client.app, "com_g1")
    assert 'id="revoke-form"' not in viewer.get(f"/runs/{run_id}/board").text
    assert viewer.post(f"/runs/{run_id}/board/revoke").status_code == 403
    assert sec.post(f"/runs/{run_id}/board/revoke").status_code == 303
    assert w.client.get(_path(url)).status_code == 404
    with Session(w.engine) as s:
        revoked = s.execute(select(PublicBoard).where(col(PublicBoard.revoked_at).is_not(None)))
        assert len(list(revoked.scalars())) == 1

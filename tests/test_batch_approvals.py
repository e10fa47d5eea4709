"""批量审批, 常用意见 and the confirmation pages before 同意, 退回 and 撤回.

The batch decides each item on its own (its own transaction, the single-decision services), so
one refusal leaves the others decided and audited; the pages never act on the first POST.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from states import runs
from states.models import AuditEvent, Request, Run, StockOpinion
from tests.api_world import MEETING, World
from tests.browser import web_user
from tests.test_api_matrix import snapshot

BATCH = "/api/v1/approvals/batch"


def _ask(w: World, code: str, secretary: str) -> int:
    """The branch records its meeting and asks to advance; return the request's id."""
    with Session(w.engine) as s:
        actor = w.actors[secretary]
        runs.record_evidence(s, run_id=w.runs[code], actor=actor, kind="meeting", data=MEETING)
        req = runs.request_advance(s, run_id=w.runs[code], actor=actor)
        s.commit()
        return req.id or 0


def _extension(w: World, code: str, secretary: str) -> int:
    with Session(w.engine) as s:
        req = runs.request_extension(
            s,
            run_id=w.runs[code],
            actor=w.actors[secretary],
            new_deadline=datetime(2027, 6, 30, 15, 59, 59, tzinfo=UTC),
            reason="人员外出",
        )
        s.commit()
        return req.id or 0


def _request(w: World, request_id: int) -> Request:
    with Session(w.engine) as s:
        return s.get_one(Request, request_id)


def _audit_ids(w: World) -> int:
    with Session(w.engine) as s:
        return int(s.execute(select(func.max(AuditEvent.id))).scalar_one() or 0)


def test_a_mixed_batch_decides_each_item_on_its_own(world: World) -> None:
    w = world
    ok_id = _ask(w, "S1", "sec_s1")
    no_opinion_id = _extension(w, "S1", "sec_s1")
    decided_id = _ask(w, "S2", "sec_s2")
    with Session(w.engine) as s:
        runs.approve(s, request_id=decided_id, actor=w.actors["com_g1"])
        s.commit()
    sibling_id = _ask(w, "S4", "sec_s4")  # H2's branch: out of com_g1's reach
    before_audit = _audit_ids(w)
    items = [
        {"request_id": ok_id, "action": "approve", "opinion": "材料齐全，同意"},
        {"request_id": sibling_id, "action": "approve"},
        {"request_id": decided_id, "action": "approve"},
        {"request_id": no_opinion_id, "action": "return", "opinion": "  "},
        {"request_id": ok_id, "action": "return", "opinion": "重复"},
        {"request_id": 999_999, "action": "approve"},
    ]
    resp = w.post("com_g1", BATCH, json={"items": items})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    res = body["results"]
    assert [r["request_id"] for r in res] == [i["request_id"] for i in items]
    assert (body["succeeded"], body["failed"]) == (1, 5)
    assert res[0] == {
        "request_id": ok_id,
        "ok": True,
        "status": "approved",
        "code": "ok",
        "message": "已同意",
    }
    # Out of reach and missing look alike: nothing says the sibling's request exists.
    assert res[1]["code"] == res[5]["code"] == "not_found" and not res[1]["ok"]
    assert res[1]["message"] == res[5]["message"] and res[1]["status"] is None
    assert res[2]["code"] == "conflict" and res[2]["status"] == "approved"
    assert "已通过" in res[2]["message"]
    assert res[3]["code"] == "invalid_input" and res[3]["message"] == "退回须填写意见"
    assert res[3]["status"] == "pending"
    assert res[4]["code"] == "duplicate" and not res[4]["ok"]
    # The good one is decided, its run advanced and audited; nothing else changed.
    with Session(w.engine) as s:
        assert s.get_one(Run, w.runs["S1"]).stage == "pledge"
        events = s.execute(select(AuditEvent).where(col(AuditEvent.id) > before_audit)).scalars()
        assert {e.data.get("request_id") for e in events} == {ok_id}
    assert _request(w, ok_id).status == "approved"
    assert _request(w, no_opinion_id).status == "pending"
    assert _request(w, sibling_id).status == "pending"
    assert w.get("com_g1", "/api/v1/approvals").json()["total"] == 1  # the extension


def test_a_batch_returns_with_one_opinion_and_refuses_more_than_100(world: World) -> None:
    w = world
    first, second = _ask(w, "S1", "sec_s1"), _ask(w, "S2", "sec_s2")
    before = snapshot(w.engine)
    too_many = [{"request_id": i, "action": "approve"} for i in range(1, 102)]
    resp = w.post("com_g1", BATCH, json={"items": too_many})
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_input"
    assert "items" in resp.json()["message"]
    for bad in ({"items": []}, {"items": [{"request_id": first, "action": "delete"}]}):
        assert w.post("com_g1", BATCH, json=bad).status_code == 422
    assert snapshot(w.engine) == before
    items = [
        {"request_id": i, "action": "return", "opinion": "会议记录不全"} for i in (first, second)
    ]
    res = w.post("com_g1", BATCH, json={"items": items}).json()["results"]
    assert [(r["ok"], r["status"]) for r in res] == [(True, "returned"), (True, "returned")]
    assert _request(w, first).return_reason == "会议记录不全"


def test_the_sibling_subtree_decides_nothing_in_a_batch(world: World) -> None:
    w = world
    req_id = _ask(w, "S1", "sec_s1")
    page = web_user(w.client.app, "admin_h2")  # logged in first: the session is a row too
    before = snapshot(w.engine)
    items = [{"request_id": req_id, "action": "approve"}]
    res = w.post("admin_h2", BATCH, json={"items": items}).json()["results"]
    assert res[0]["code"] == "not_found" and res[0]["status"] is None
    form = {"request_id": str(req_id), "action": "approve", "step": "confirm"}
    resp = page.post("/approvals/batch", form)
    assert resp.status_code == 200 and 'data-ok="no"' in resp.text
    assert snapshot(w.engine) == before


def _post(user: Any, url: str, data: dict[str, Any]) -> Any:
    """A form POST with repeated fields (lists), the CSRF token included."""
    return user.client.post(url, data={"csrf_token": user.csrf, **data}, follow_redirects=False)


def test_the_page_confirms_then_decides_several_and_lists_each_result(world: World) -> None:
    w = world
    first, second = _ask(w, "S1", "sec_s1"), _ask(w, "S2", "sec_s2")
    com = web_user(w.client.app, "com_g1")
    inbox = com.get("/approvals").text
    for rid in (first, second):
        assert f'name="request_id" value="{rid}" form="batch"' in inbox
    assert "批量同意" in inbox and "批量退回" in inbox
    before = snapshot(w.engine)
    # Nothing chosen, or a return without an opinion: refused with the reason, nothing written.
    resp = _post(com, "/approvals/batch", {"action": "approve"})
    assert resp.status_code == 422 and "请先勾选要审批的申请" in resp.text
    resp = _post(com, "/approvals/batch", {"request_id": [first], "action": "return"})
    assert resp.status_code == 422 and "批量退回须填写意见" in resp.text
    # The first POST is the confirmation page: each chosen request, the opinion; no change.
    ids = [str(first), str(second), str(first)]
    form = {"request_id": ids, "action": "approve", "opinion": "同意<b>"}
    resp = _post(com, "/approvals/batch", form)
    assert resp.status_code == 200 and "确认批量同意（2 个申请）" in resp.text
    assert "内科第一党支部" in resp.text and "内科第二党支部" in resp.text
    assert "同意&lt;b&gt;" in resp.text and "宣传发动 → 公开承诺" in resp.text
    assert snapshot(w.engine) == before
    # 返回 keeps what was typed and the ticks.
    resp = _post(com, "/approvals/batch", {**form, "step": "back"})
    assert resp.status_code == 200 and ">同意&lt;b&gt;</textarea>" in resp.text
    assert f'value="{first}" form="batch" checked' in resp.text
    assert snapshot(w.engine) == before
    # Meanwhile the second branch withdraws: the confirmation decides one, reports the other.
    sec2 = web_user(w.client.app, "sec_s2")
    sec2.post(f"/runs/{w.runs['S2']}/withdraw", {"request_id": str(second), "step": "confirm"})
    resp = _post(com, "/approvals/batch", {**form, "step": "confirm"})
    assert resp.status_code == 200
    results = dict(re.findall(r'data-result-id="(\d+)" data-ok="(\w+)"', resp.text))
    assert results == {str(first): "yes", str(second): "no"}
    assert "1 个已办理，1 个未办理" in resp.text and "已撤回，不能再审批" in resp.text
    assert _request(w, first).status == "approved"


def test_stock_opinions_fill_the_opinion_and_are_kept_per_committee(world: World) -> None:
    w = world
    req_id = _ask(w, "S1", "sec_s1")
    com = web_user(w.client.app, "com_g1")
    g1 = str(w.orgs["G1"].id)
    assert 'id="stock"' in com.get("/approvals").text
    resp = com.post("/approvals/opinions", {"org_id": g1, "text": " 会议记录不全，请补充 "})
    assert resp.status_code == 303
    again = com.post("/approvals/opinions", {"org_id": g1, "text": "会议记录不全，请补充"})
    assert again.status_code == 409 and "已有相同的常用意见" in again.text
    assert com.post("/approvals/opinions", {"org_id": g1, "text": ""}).status_code == 422
    # A secretary (no reach to G1) cannot add to it: the 404 page; nothing written.
    sec = web_user(w.client.app, "sec_s1")
    assert sec.post("/approvals/opinions", {"org_id": g1, "text": "x"}).status_code == 404
    assert 'id="stock"' not in sec.get("/approvals").text
    with Session(w.engine) as s:
        stock = s.execute(select(StockOpinion)).scalars().all()
    assert [o.text for o in stock] == ["会议记录不全，请补充"]
    stock_id = str(stock[0].id)
    page = com.get("/approvals").text
    assert f'<option value="{stock_id}">会议记录不全，请补充</option>' in page
    # The empty box takes the chosen stock opinion: on the confirmation page, then decided.
    form = {"request_id": str(req_id), "action": "return", "stock_opinion": stock_id}
    resp = com.post("/approvals/batch", form)
    assert resp.status_code == 200 and "会议记录不全，请补充" in resp.text
    resp = com.post(f"/approvals/{req_id}/return", {"reason": "", "stock_opinion": stock_id})
    assert resp.status_code == 200 and "确认退回" in resp.text
    resp = com.post(
        f"/approvals/{req_id}/return", {"reason": "会议记录不全，请补充", "step": "confirm"}
    )
    assert resp.status_code == 303
    assert _request(w, req_id).return_reason == "会议记录不全，请补充"
    # Over the API too; then removed (the sibling's delete is the matrices' 404).
    listed = w.get("com_h1", "/api/v1/opinions").json()
    assert listed == []  # H1's committee keeps its own list
    assert [o["text"] for o in w.get("com_g1", "/api/v1/opinions").json()] == [stock[0].text]
    added = w.post("com_g1", "/api/v1/opinions", json={"org_id": int(g1), "text": "同意"})
    assert added.status_code == 201 and added.json()["org_name"] == "第一医院内科党总支"
    assert (
        w.post("sec_s1", "/api/v1/opinions", json={"org_id": int(g1), "text": "y"}).status_code
        == 404
    )
    assert com.post(f"/approvals/opinions/{stock_id}/delete").status_code == 303
    resp = w.client.delete(f"/api/v1/opinions/{added.json()['id']}", headers=w.as_("com_g1"))
    assert resp.status_code == 204
    with Session(w.engine) as s:
        assert s.execute(select(StockOpinion)).first() is None
        actions = s.execute(
            select(AuditEvent.action).where(col(AuditEvent.action).like("opinion.%"))
        ).scalars()
        assert sorted(actions) == ["opinion.added"] * 2 + ["opinion.removed"] * 2


def test_decisions_and_withdrawals_wait_for_the_confirmation(world: World) -> None:
    w = world
    req_id = _ask(w, "S1", "sec_s1")
    run_id = w.runs["S1"]
    com = web_user(w.client.app, "com_g1")
    sec = web_user(w.client.app, "sec_s1")
    before = snapshot(w.engine)
    # 同意: the first POST shows which branch, which stage and the opinion; nothing changes.
    resp = com.post(f"/approvals/{req_id}/approve", {"opinion": "同意<script>x</script>"})
    assert resp.status_code == 200 and 'data-testid="confirm-page"' in resp.text
    for text in ("内科第一党支部", "宣传发动 → 公开承诺", "同意&lt;script&gt;x&lt;/script&gt;"):
        assert text in resp.text
    assert "同意后「内科第一党支部」进入「公开承诺」阶段" in resp.text
    assert 'name="step" value="confirm"' in resp.text and 'name="step" value="back"' in resp.text
    # 退回 likewise, and 返回 brings the typed opinion back to the inbox.
    resp = com.post(f"/approvals/{req_id}/return", {"reason": "材料不全"})
    assert resp.status_code == 200 and "确认退回" in resp.text and "材料不全" in resp.text
    resp = com.post(f"/approvals/{req_id}/return", {"reason": "材料不全", "step": "back"})
    assert resp.status_code == 200 and ">材料不全</textarea>" in resp.text
    # 撤回: the requester sees what will happen; someone else is refused.
    resp = sec.post(f"/runs/{run_id}/withdraw", {"request_id": str(req_id)})
    assert resp.status_code == 200 and "确认撤回推进申请" in resp.text
    resp = com.post(f"/runs/{run_id}/withdraw", {"request_id": str(req_id)})
    assert resp.status_code == 403 and "只有申请人本人可以撤回申请" in resp.text
    back = sec.post(f"/runs/{run_id}/withdraw", {"request_id": str(req_id), "step": "back"})
    assert back.status_code == 303 and back.headers["location"] == f"/runs/{run_id}"
    assert snapshot(w.engine) == before
    # Only the confirmation acts.
    resp = sec.post(f"/runs/{run_id}/withdraw", {"request_id": str(req_id), "step": "confirm"})
    assert resp.status_code == 303
    assert _request(w, req_id).status == "withdrawn"


def test_two_people_adding_the_same_stock_opinion_at_once_get_a_409_not_a_500(
    world: World, monkeypatch: Any
) -> None:
    """The repeat check and the insert race: the loser of the unique constraint gets 409."""
    import pytest

    from states import opinions
    from states.errors import Conflict
    from states.users import actor_by_username

    w = world
    g1 = w.orgs["G1"].id or 0
    with Session(w.engine) as s:
        actor = actor_by_username(s, "com_g1")
        opinions.add(s, actor=actor, org_id=g1, text="同意，材料齐全")
        s.commit()
    monkeypatch.setattr(opinions, "_exists", lambda *_a: False)  # the other one not yet seen
    with Session(w.engine) as s:
        with pytest.raises(Conflict) as caught:
            opinions.add(s, actor=actor, org_id=g1, text="同意，材料齐全")
        assert caught.value.details == {"rule": "duplicate_opinion"}
        s.rollback()
    with Session(w.engine) as s:
        count = s.execute(select(func.count()).select_from(StockOpinion)).scalar_one()
    assert count == 1

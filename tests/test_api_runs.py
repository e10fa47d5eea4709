"""A run through the API: evidence, requests, approvals, returns, extensions, history."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, func, select

from states.models import AuditEvent, OutboxMessage, Request, Run
from tests.api_world import MEETING, World


def _count(w: World, model: type) -> int:
    with Session(w.engine) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def test_secretary_walks_a_stage_through_return_and_approval(world: World) -> None:
    w = world
    run = w.runs["S1"]
    detail = w.get("sec_s1", f"/api/v1/runs/{run}").json()
    assert detail["stage"] == "mobilize" and detail["stage_name"] == "宣传发动"
    assert detail["deadline"].endswith("+08:00")
    assert [c["met"] for c in detail["checklist"]] == [False]
    assert "request_advance" in detail["allowed_actions"]
    assert [t["status"] for t in detail["timeline"]][:2] == ["current", "todo"]

    # Not ready: 409 with every unmet requirement and its reason; nothing written.
    audit_before = _count(w, AuditEvent)
    r = w.post("sec_s1", f"/api/v1/runs/{run}/requests", json={})
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "requirements_unmet"
    assert body["details"] and all(d["reason"] for d in body["details"])
    assert _count(w, AuditEvent) == audit_before and _count(w, Request) == 0

    r = w.post("sec_s1", f"/api/v1/runs/{run}/evidence", json={"kind": "meeting", "data": MEETING})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "meeting" and r.json()["stage"] == "mobilize"
    listed = w.get("sec_s1", f"/api/v1/runs/{run}/evidence").json()
    assert listed["total"] == 1

    r = w.post("sec_s1", f"/api/v1/runs/{run}/requests", json={"comment": "已开动员大会"})
    assert r.status_code == 201, r.text
    req = r.json()
    assert req["status"] == "pending" and req["current_approver"]["code"] == "G1"
    assert req["requested_by"]["display_name"] == "sec_s1"

    # The committee of G1 sees it in its inbox; H1's committee does not (not its step).
    inbox = w.get("com_g1", "/api/v1/approvals").json()
    assert [i["request"]["id"] for i in inbox["items"]] == [req["id"]]
    assert inbox["items"][0]["run"]["org"]["code"] == "S1"
    assert w.get("com_h1", "/api/v1/approvals").json()["total"] == 0
    assert w.get("sec_s1", "/api/v1/approvals").json()["total"] == 0

    # Returning needs an opinion.
    r = w.post("com_g1", f"/api/v1/requests/{req['id']}/return", json={})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "reason"
    r = w.post("com_g1", f"/api/v1/requests/{req['id']}/return", json={"reason": "请补充会议记录"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "returned" and r.json()["return_reason"] == "请补充会议记录"

    # The secretary sees the opinion in the history, asks again; the committee approves.
    hist = w.get("sec_s1", f"/api/v1/runs/{run}/history").json()["items"]
    assert hist[0]["action"] == "request.returned"
    assert hist[0]["data"]["reason"] == "请补充会议记录"
    assert [h["seq"] for h in hist] == sorted((h["seq"] for h in hist), reverse=True)
    req2 = w.post("sec_s1", f"/api/v1/runs/{run}/requests", json={}).json()
    r = w.post("com_g1", f"/api/v1/requests/{req2['id']}/approve", json={"opinion": "同意"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    assert r.json()["decisions"][0]["opinion"] == "同意"
    after = w.get("sec_s1", f"/api/v1/runs/{run}").json()
    assert after["stage"] == "pledge" and after["pending_request"] is None

    # The campaign's counts moved.
    camp = w.get("org_b", f"/api/v1/campaigns/{w.campaign_id}").json()
    by_stage = {s["stage"]: s["runs"] for s in camp["stages"]}
    assert by_stage["pledge"] == 1 and by_stage["mobilize"] == 3


def _pending(w: World, code: str = "S1", who: str = "sec_s1") -> dict[str, Any]:
    run = w.runs[code]
    w.post(who, f"/api/v1/runs/{run}/evidence", json={"kind": "meeting", "data": MEETING})
    r = w.post(who, f"/api/v1/runs/{run}/requests", json={})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_self_approval_and_own_branch_are_refused(world: World) -> None:
    w = world
    # "dual" is S1's secretary and sits on G1's committee, which approves S1.
    req = _pending(w, who="dual")
    r = w.post("dual", f"/api/v1/requests/{req['id']}/approve", json={})
    assert r.status_code == 403
    assert r.json()["details"]["rule"] == "self_approval"
    # Even a request by someone else on her own branch: refused.
    w.post("dual", f"/api/v1/requests/{req['id']}/withdraw", json={})
    req = w.post("sec_s1", f"/api/v1/runs/{w.runs['S1']}/requests", json={}).json()
    r = w.post("dual", f"/api/v1/requests/{req['id']}/approve", json={})
    assert r.status_code == 403
    assert r.json()["details"]["rule"] == "own_branch"
    assert w.get("dual", "/api/v1/approvals").json()["total"] == 0
    with Session(w.engine) as s:
        assert s.get(Run, w.runs["S1"]).stage == "mobilize"  # type: ignore[union-attr]


def test_withdraw_only_by_requester(world: World) -> None:
    w = world
    req = _pending(w)
    r = w.post("com_g1", f"/api/v1/requests/{req['id']}/withdraw")
    assert r.status_code == 403
    r = w.post("sec_s1", f"/api/v1/requests/{req['id']}/withdraw")
    assert r.status_code == 200 and r.json()["status"] == "withdrawn"
    r = w.post("sec_s1", f"/api/v1/requests/{req['id']}/withdraw")
    assert r.status_code == 409 and r.json()["details"]["rule"] == "not_pending"


def test_extension_is_decided_like_a_request(world: World) -> None:
    w = world
    run = w.runs["S2"]
    r = w.post(
        "sec_s2",
        f"/api/v1/runs/{run}/extensions",
        json={"new_deadline": "2027-03-01T18:00:00", "reason": "人员外出"},
    )
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "new_deadline"
    r = w.post(
        "sec_s2",
        f"/api/v1/runs/{run}/extensions",
        json={"new_deadline": "2027-03-01T18:00:00+08:00", "reason": "人员外出"},
    )
    assert r.status_code == 201, r.text
    ext = r.json()
    assert ext["kind"] == "extension"
    r = w.post("com_g1", f"/api/v1/requests/{ext['id']}/approve", json={})
    assert r.status_code == 200, r.text
    assert w.get("sec_s2", f"/api/v1/runs/{run}").json()["deadline"] == "2027-03-01T18:00:00+08:00"


def test_bodies_forbid_fields_the_client_must_not_set(world: World) -> None:
    w = world
    run = w.runs["S1"]
    for body in (
        {"state": "done"},
        {"version": 99},
        {"approved_by": 1},
        {"comment": "x", "stage": "commend"},
    ):
        r = w.post("sec_s1", f"/api/v1/runs/{run}/requests", json=body)
        assert r.status_code == 422, body
        assert r.json()["details"][0]["type"] == "extra_forbidden"
    r = w.post(
        "sec_s1",
        f"/api/v1/runs/{run}/evidence",
        json={"kind": "meeting", "data": {**MEETING, "recorded_by": 1}},
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["field"] == "data.meeting.recorded_by" or "recorded_by" in r.text
    with Session(w.engine) as s:
        assert s.get(Run, run).stage == "mobilize"  # type: ignore[union-attr]


def test_malformed_input_gets_clear_4xx_never_500(world: World) -> None:
    w = world
    run = w.runs["S1"]
    cases = [
        (
            "post",
            f"/api/v1/runs/{run}/evidence",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
        ),
        ("post", f"/api/v1/runs/{run}/evidence", {"json": {"kind": "party", "data": {}}}),
        (
            "post",
            f"/api/v1/runs/{run}/evidence",
            {"json": {"kind": "meeting", "data": {**MEETING, "present": 9}}},
        ),
        (
            "post",
            f"/api/v1/runs/{run}/evidence",
            {
                "json": {
                    "kind": "activity",
                    "data": {"heading": "x", "date": "2026-01-01", "title": "t"},
                }
            },
        ),
        (
            "post",
            f"/api/v1/runs/{run}/requests",
            {"content": b"\xff", "headers": {"content-type": "application/json"}},
        ),
        ("get", "/api/v1/runs/abc", {}),
        ("get", "/api/v1/runs/99999999999999999999999", {}),
        ("get", f"/api/v1/campaigns/{w.campaign_id}/runs?limit=100000", {}),
        ("get", f"/api/v1/campaigns/{w.campaign_id}/runs?stage=nowhere", {}),
        ("get", f"/api/v1/orgs/{w.orgs['B'].id}/subtree?kind=公司", {}),
        ("post", "/api/v1/campaigns", {"json": {"template": "nope", "root_org_id": 1}}),
        (
            "post",
            "/api/v1/campaigns",
            {
                "json": {
                    "template": "chuangxian_zhengyou",
                    "root_org_id": 1,
                    "schedule": {"nowhere": {"days": 3}},
                }
            },
        ),
    ]
    for method, url, kw in cases:
        headers = {**w.as_("admin_b"), **kw.pop("headers", {})}
        r = getattr(w.client, method)(url, headers=headers, **kw)
        assert 400 <= r.status_code < 500, (url, r.status_code, r.text)
        body = r.json()
        assert set(body) == {"code", "message", "details"}, body
        assert any("\u4e00" <= ch <= "\u9fff" for ch in body["message"]), body


def test_oversized_body_is_413(world: World) -> None:
    w = world
    big = {"comment": "长" * 2000, "pad": "x" * (1024 * 1024)}
    r = w.post("sec_s1", f"/api/v1/runs/{w.runs['S1']}/requests", json=big)
    assert r.status_code == 413
    assert r.json()["code"] == "too_large"


def test_lists_are_paginated_with_a_cap(world: World) -> None:
    w = world
    url = f"/api/v1/campaigns/{w.campaign_id}/runs"
    page1 = w.get("org_b", url, params={"limit": 3}).json()
    page2 = w.get("org_b", url, params={"limit": 3, "offset": 3}).json()
    assert page1["total"] == page2["total"] == 4
    assert len(page1["items"]) == 3 and len(page2["items"]) == 1
    codes = [i["org"]["code"] for i in page1["items"] + page2["items"]]
    assert sorted(codes) == ["S1", "S2", "S3", "S4"]
    assert w.get("org_b", url, params={"limit": 201}).status_code == 422


def test_campaign_views_follow_the_subtree(world: World) -> None:
    w = world
    cid = w.campaign_id
    whole = w.get("org_b", f"/api/v1/campaigns/{cid}").json()
    part = w.get("com_h1", f"/api/v1/campaigns/{cid}").json()
    assert whole["total"] == 4 and part["total"] == 3
    assert part["scope"] == [w.orgs["H1"].path]
    runs = w.get("com_h1", f"/api/v1/campaigns/{cid}/runs").json()
    assert sorted(i["org"]["code"] for i in runs["items"]) == ["S1", "S2", "S3"]
    g1 = w.get("org_b", f"/api/v1/campaigns/{cid}/runs", params={"org": w.orgs["G1"].id}).json()
    assert sorted(i["org"]["code"] for i in g1["items"]) == ["S1", "S2"]
    # A secretary has no campaign dashboard: 403 names the roles needed.
    r = w.get("sec_s1", f"/api/v1/campaigns/{cid}")
    assert r.status_code == 403


def test_outbox_and_audit_commit_with_the_change(world: World) -> None:
    w = world
    before = (_count(w, AuditEvent), _count(w, OutboxMessage))
    req = _pending(w)
    w.post("com_g1", f"/api/v1/requests/{req['id']}/approve", json={})
    audit, outbox = _count(w, AuditEvent) - before[0], _count(w, OutboxMessage) - before[1]
    assert audit == 3  # evidence, request, advance
    assert outbox == 2  # request submitted, approved

"""`GET /api/v1/me/runs`: whose runs, in what order, and what is still needed.

The world's campaign (tests/api_world.py) runs in every branch under B: S1, S2 (under G1), S3
(under H1) and S4 (under H2, the sibling subtree).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from states.members.models import Member
from states.models import Run
from states.timeutil import utcnow
from tests.api_world import MEETING, World

URL = "/api/v1/me/runs"


def codes(w: World, who: str, **params: Any) -> list[str]:
    resp = w.get(who, URL, params=params)
    assert resp.status_code == 200, resp.text
    return [i["org"]["code"] for i in resp.json()["items"]]


def unmet(w: World, who: str, run_id: int) -> list[str]:
    run = w.get(who, f"/api/v1/runs/{run_id}").json()
    return [c["reason"] for c in run["checklist"] if not c["met"]]


def test_a_secretary_sees_her_branch_only(world: World) -> None:
    w = world
    assert codes(w, "sec_s1") == ["S1"]
    assert codes(w, "sec_s1", scope="reach") == ["S1"]
    assert codes(w, "sec_s4") == ["S4"]
    # The sibling subtree sees none of H1's runs, in either scope.
    assert codes(w, "admin_h2") == []
    assert codes(w, "admin_h2", scope="reach") == ["S4"]
    # A committee above: nothing of its own, its subtree with scope=reach.
    assert codes(w, "com_g1") == []
    assert sorted(codes(w, "com_g1", scope="reach")) == ["S1", "S2"]
    assert sorted(codes(w, "dual")) == ["S1"]


def test_item_fields_and_what_is_still_needed(world: World) -> None:
    w = world
    run_id = w.runs["S1"]
    (item,) = w.get("sec_s1", URL).json()["items"]
    assert item["id"] == run_id and item["campaign"]["id"] == w.campaign_id
    assert item["stage"] == {"id": "mobilize", "name": "宣传发动"}
    assert item["deadline"].endswith("+08:00")
    assert item["deadline_local"] == item["deadline"][:16].replace("T", " ")
    assert item["overdue"] is False and item["done"] is False
    assert item["needs"] and item["needs"] == unmet(w, "sec_s1", run_id)
    resp = w.post(
        "sec_s1", f"/api/v1/runs/{run_id}/evidence", json={"kind": "meeting", "data": MEETING}
    )
    assert resp.status_code == 201
    (item,) = w.get("sec_s1", URL).json()["items"]
    assert item["needs"] == unmet(w, "sec_s1", run_id)


def test_roster_names_match_the_run_page(world: World) -> None:
    """At 公开承诺 with a roster, the reasons name the missing members, as on the run page."""
    w = world
    run_id = w.runs["S1"]
    with Session(w.engine) as s:
        s.execute(update(Run).where(col(Run.id) == run_id).values(stage="pledge"))
        for name in ("党员甲", "党员乙", "党员丙"):
            s.add(
                Member(
                    org_id=w.orgs["S1"].id or 0,
                    name=name,
                    category="正式党员",
                    joined_on=date(2010, 7, 1),
                )
            )
        s.commit()
    (item,) = w.get("sec_s1", URL).json()["items"]
    assert item["stage"]["name"] == "公开承诺"
    assert item["needs"] == unmet(w, "sec_s1", run_id)
    assert any("党员甲" in n for n in item["needs"]), item["needs"]


def test_overdue_first_then_by_deadline_and_paginated(world: World) -> None:
    w = world
    with Session(w.engine) as s:
        past = utcnow() - timedelta(days=3)
        s.execute(update(Run).where(col(Run.id) == w.runs["S3"]).values(deadline=past))
        s.commit()
    body = w.get("com_h1", URL, params={"scope": "reach"}).json()
    assert body["total"] == 3
    first = body["items"][0]
    assert first["org"]["code"] == "S3" and first["overdue"] is True and first["days_left"] < 0
    page = w.get("com_h1", URL, params={"scope": "reach", "limit": 1, "offset": 1}).json()
    assert page["total"] == 3 and len(page["items"]) == 1
    assert page["items"][0]["id"] == body["items"][1]["id"]
    assert w.get("com_h1", URL, params={"limit": 201}).status_code == 422
    assert w.get("com_h1", URL, params={"scope": "all"}).status_code == 422
    assert w.client.get(URL).status_code == 401

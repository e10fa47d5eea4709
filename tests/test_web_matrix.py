"""Every page that takes an id answers the sibling subtree with the 404 page and changes nothing.

The page routes are enumerated from the routers of `api.web.PAGES`, so a page added later is
checked without touching this file (a new kind of id needs a sample in `sample_ids`). The caller
is logged in through the form as `admin_h2` (admin, organiser and committee member of H2, the
sibling of H1) and sends a valid CSRF token and a plausible form, so only reach can refuse.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute
from sqlmodel import Session, col, select

from api import web
from states.models import Bulletin, Grant
from states.timeutil import utcnow
from tests.api_world import World
from tests.browser import web_user
from tests.test_api_matrix import _objects, snapshot

ID_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")
#: A form with every field the id-taking pages read, so that only reach can refuse the POST.
FORM = {
    "kind": "meeting",
    "title": "动员大会",
    "date": "2026-11-20",
    "expected": "3",
    "present": "3",
    "comment": "请审批",
    "opinion": "同意",
    "reason": "材料不全",
    "new_date": "2027-06-30",
    "username": "matrix_user",
    "display_name": "测试用户",
    "password": "password-123456",
    "role": "secretary",
    "org_code": "S1",
}


def page_routes() -> list[APIRoute]:
    return [r for m in web.PAGES for r in m.router.routes if isinstance(r, APIRoute)]


def sample_ids(w: World) -> dict[str, Any]:
    """An object of each kind under H1 (campaign, run, request, notice, grant, organisation)."""
    ids = _objects(w)
    with Session(w.engine) as s:
        ids["grant_id"] = s.execute(
            select(Grant.id).where(Grant.user_id == w.actors["sec_s1"].user_id)
        ).scalar_one()
        ids["user_id"] = w.actors["sec_s1"].user_id
        # A weekly bulletin (简报) of H1 for the notice centre's bulletin page.
        bulletin = Bulletin(
            campaign_id=ids["campaign_id"],
            org_id=w.orgs["H1"].id or 0,
            period="2026-W48",
            as_of=utcnow(),
            data={"campaign": "H1 活动", "period": "2026 年第 48 周", "stages": []},
        )
        s.add(bulletin)
        s.commit()
        ids["bulletin_id"] = bulletin.id
    ids["org_id"] = w.orgs["S1"].id
    ids["token"] = "forged.token"  # public addresses (/b/, /s/): a forged one is the 404 page
    return ids


def test_every_page_declares_who_may_open_it() -> None:
    from api.app import route_access

    routes = page_routes()
    assert len(routes) >= 10
    assert [r.path for r in routes if route_access(r) is None] == []
    # Pages stay out of /openapi.json, except the public ones printed on QR codes.
    documented = sorted(f"{sorted(r.methods)[0]} {r.path}" for r in routes if r.include_in_schema)
    assert documented == [
        "GET /b/{token}",
        "GET /s/{token}",
        "GET /s/{token}/check",
        "POST /b/{token}",
        "POST /s/{token}",
    ]


def test_the_sibling_subtree_gets_the_404_page_on_every_page_with_an_id(world: World) -> None:
    w = world
    ids = sample_ids(w)
    ids["request_id"] = _pending_request(w)
    sibling = web_user(w.client.app, "admin_h2")
    before = snapshot(w.engine)
    checked = []
    for route in page_routes():
        params = ID_PARAM.findall(route.path)
        if not params:
            continue
        missing = [p for p in params if p not in ids]
        assert not missing, f"no sample id for {missing} in {route.path}: add it to sample_ids"
        url = ID_PARAM.sub(lambda m: str(ids[m.group(1)]), route.path)
        for method in sorted(route.methods or ()):
            if method == "HEAD":
                continue
            form = {**FORM, "request_id": str(ids["request_id"])}
            resp = sibling.post(url, form) if method == "POST" else sibling.get(url)
            assert resp.status_code == 404, (method, url, resp.status_code, resp.text[:300])
            assert "页面不存在" in resp.text and "text/html" in resp.headers["content-type"]
            checked.append(f"{method} {route.path}")
    assert snapshot(w.engine) == before
    for expected in (
        "GET /runs/{run_id}",
        "POST /runs/{run_id}/evidence",
        "POST /runs/{run_id}/advance",
        "POST /runs/{run_id}/extension",
        "POST /runs/{run_id}/withdraw",
        "POST /approvals/{request_id}/approve",
        "POST /approvals/{request_id}/return",
        "POST /approvals/opinions/{opinion_id}/delete",
        "POST /notices/{notification_id}/read",
        "GET /evidence/{evidence_id}",
        "POST /evidence/{evidence_id}/void",
        "POST /evidence/{evidence_id}/amend",
        "POST /runs/{run_id}/link",
        "POST /runs/{run_id}/unlink",
        "POST /evidence/{evidence_id}/attachments",
        "GET /files/{attachment_id}",
        "GET /files/{attachment_id}/thumbnail",
        "GET /runs/{run_id}/commitments",
        "POST /runs/{run_id}/commitments",
        "GET /runs/{run_id}/meeting",
        "POST /runs/{run_id}/meeting",
        "GET /orgs/{org_id}/users/{user_id}/password",
        "POST /orgs/{org_id}/users/{user_id}/password",
        "GET /bulletins/{bulletin_id}",
    ):
        assert expected in checked, (expected, checked)
    # The same ids open for the owner's side of the tree (so the 404s above are about reach).
    owner = web_user(w.client.app, "sec_s1")
    assert owner.get(f"/runs/{ids['run_id']}").status_code == 200
    assert (
        web_user(w.client.app, "com_h1").get(f"/bulletins/{ids['bulletin_id']}").status_code == 200
    )
    committee = web_user(w.client.app, "com_g1")
    assert f'data-request-id="{ids["request_id"]}"' in committee.get("/approvals").text


def _pending_request(w: World) -> int:
    """`_objects` leaves S1's request to advance pending; return its id."""
    from states.models import Request

    with Session(w.engine) as s:
        return int(
            s.execute(
                select(Request.id).where(col(Request.status) == "pending").order_by(col(Request.id))
            )
            .scalars()
            .first()
            or 0
        )

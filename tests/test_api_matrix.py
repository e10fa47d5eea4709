"""The authorisation matrix, built from `app.routes`.

Every route must declare who may call it. A token from the sibling subtree (an admin, organiser
and committee member of H2) gets 404 on every route that takes an id of an object under H1,
for reads and writes alike, and the database is byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel

from api.app import api_routes, create_app, route_access
from states import inbox, runs
from states.campaigns import launch_campaign
from states.jobs.models import Job
from states.models import Attachment, Bulletin, StockOpinion
from states.supervision.models import Circular, CircularItem, Finding
from states.survey.models import Survey, SurveyAnswer
from states.timeutil import utcnow
from states.users import load_actor
from tests.api_world import MEETING, World

ID_PARAM = re.compile(r"\{(\w+)\}")
# Routes whose path parameter names global data, not an object in the organisation tree.
GLOBAL = {
    "/api/v1/templates/{key}": "templates are shared by every organisation",
    "/api/v1/templates/{key}/diagram": "templates are shared by every organisation",
}


def test_every_route_declares_who_may_call_it(engine: Engine) -> None:
    app = create_app(engine)
    routes = api_routes(app)
    assert len(routes) >= 25
    undeclared = [f"{sorted(r.methods)} {r.path}" for r in routes if route_access(r) is None]
    assert undeclared == []
    declared = {r.path_format: route_access(r) for r in routes}
    assert declared["/api/v1/auth/token"] == "public"
    assert declared["/api/v1/runs/{run_id}"] == "authenticated"
    assert {r.value for r in declared["/api/v1/orgs/import"]} == {"organiser", "admin"}
    # The declaration is published in the OpenAPI document too.
    doc = app.openapi()
    assert doc["paths"]["/api/v1/orgs/import"]["post"]["x-access"] == ["organiser", "admin"]


def _objects(w: World) -> dict[str, Any]:
    """Create objects under H1: a campaign rooted at H1, a pending request, a notice."""
    with Session(w.engine, expire_on_commit=False) as s:
        org_h1 = load_actor(s, w.actors["org_h1"].user_id)
        campaign = launch_campaign(
            s, template_key="chuangxian_zhengyou", root_code="H1", actor=org_h1, name="H1 活动"
        )
        s.commit()
        sec = w.actors["sec_s1"]
        run_id = w.runs["S1"]
        runs.record_evidence(s, run_id=run_id, actor=sec, kind="meeting", data=MEETING)
        req = runs.request_advance(s, run_id=run_id, actor=sec)
        s.commit()
        inbox.post(s, user_ids=[sec.user_id], kind="reminder", title="提醒", run_id=run_id)
        s.commit()
        note_id = s.execute(text("SELECT max(id) FROM inbox_item")).scalar_one()
        # A file on S1's record (the row is enough: out of reach, no byte is read).
        evidence_id = s.execute(text("SELECT max(id) FROM evidence")).scalar_one()
        s.add(
            Attachment(
                evidence_id=evidence_id,
                sha256="0" * 64,
                size=1,
                content_type="image/png",
                filename="a.png",
            )
        )
        s.commit()
        attachment_id = s.execute(text("SELECT max(id) FROM attachment")).scalar_one()
        s.add(StockOpinion(org_id=w.orgs["G1"].id or 0, text="材料齐全，同意"))  # G1's 常用意见
        s.commit()
        opinion_id = s.execute(text("SELECT max(id) FROM stock_opinion")).scalar_one()
        survey_id, answer_id = survey_with_answer(s, run_id, w.orgs["S1"].id or 0, sec.user_id)
        job = Job(kind="ledger", requested_by=w.actors["com_h1"].user_id)  # an export of H1's
        s.add(job)
        s.commit()
        bulletin, finding, circular = archive_rows(s, w, campaign.id or 0)
        grant_id = s.execute(
            text("SELECT min(id) FROM role_grant WHERE user_id = :u"), {"u": sec.user_id}
        ).scalar_one()
    return {
        "org_id": w.orgs["G1"].id,
        "campaign_id": campaign.id,
        "run_id": run_id,
        "request_id": req.id,
        "notification_id": note_id,
        "event_kind": "reminder",
        "evidence_id": evidence_id,
        "attachment_id": attachment_id,
        "opinion_id": opinion_id,
        "survey_id": survey_id,
        "answer_id": answer_id,
        "job_id": job.id,
        "bulletin_id": bulletin,
        "finding_id": finding,
        "circular_id": circular,
        "user_id": sec.user_id,  # S1's secretary and her grant there
        "grant_id": grant_id,
    }


def archive_rows(s: Session, w: World, campaign_id: int) -> tuple[int, int, int]:
    """A weekly 简报 of H1, a finding (督导意见) on S1 and a 通报 on G1 naming S1 (rows only)."""
    h1, g1, s1 = (w.orgs[c].id or 0 for c in ("H1", "G1", "S1"))
    author = w.actors["com_h1"].user_id
    bulletin = Bulletin(
        campaign_id=campaign_id, org_id=h1, period="2026-W47", as_of=utcnow(), data={}
    )
    finding = Finding(org_id=s1, text="会议记录不全", due=utcnow(), created_by=author)
    circular = Circular(org_id=g1, title="通报", text="现予通报", created_by=author)
    s.add_all([bulletin, finding, circular])
    s.flush()
    s.add(CircularItem(circular_id=circular.id or 0, org_id=s1, reason="会议记录缺失"))
    s.commit()
    return bulletin.id or 0, finding.id or 0, circular.id or 0


def survey_with_answer(s: Session, run_id: int, org_id: int, user_id: int) -> tuple[int, int]:
    """A 群众评议 survey of S1's run with one paper answer (rows only: reach is what counts)."""
    survey = Survey(
        run_id=run_id, stage="mobilize", org_id=org_id, nonce="n" * 24, opened_by=user_id
    )
    s.add(survey)
    s.flush()
    answer = SurveyAnswer(survey_id=survey.id or 0, channel="paper", receipt="R" * 10, comment="好")
    s.add(answer)
    s.commit()
    return survey.id or 0, answer.id or 0


# A valid body for every write that takes an id, so that only reach can refuse it.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/runs/{run_id}/evidence"): {"kind": "meeting", "data": MEETING},
    ("POST", "/api/v1/runs/{run_id}/evidence/batch"): {
        "items": [{"kind": "meeting", "data": MEETING}]
    },
    ("POST", "/api/v1/runs/{run_id}/evidence/link"): {"evidence_id": 1},
    ("POST", "/api/v1/runs/{run_id}/evidence/unlink"): {"evidence_id": 1},
    ("POST", "/api/v1/evidence/{evidence_id}/void"): {"reason": "误录"},
    ("PATCH", "/api/v1/evidence/{evidence_id}"): {"data": MEETING, "reason": "更正"},
    ("POST", "/api/v1/runs/{run_id}/requests"): {"comment": "请审批"},
    ("POST", "/api/v1/runs/{run_id}/extensions"): {
        "new_deadline": "2027-06-30T23:59:59+08:00",
        "reason": "人员外出",
    },
    ("POST", "/api/v1/runs/{run_id}/send-back"): {"to_stage": "mobilize", "reason": "重做"},
    ("POST", "/api/v1/requests/{request_id}/approve"): {"opinion": "同意"},
    ("POST", "/api/v1/requests/{request_id}/return"): {"reason": "材料不全"},
    ("POST", "/api/v1/requests/{request_id}/withdraw"): {},
    ("POST", "/api/v1/notifications/{notification_id}/read"): {},
    ("POST", "/api/v1/evidence/{evidence_id}/attachments"): {},
    ("POST", "/api/v1/orgs/{org_id}/members/import"): {},
    ("POST", "/api/v1/orgs/{org_id}/users"): {
        "username": "matrix_user",
        "display_name": "测试用户",
        "role": "secretary",
    },
    ("POST", "/api/v1/users/{user_id}/grants"): {"org_id": 1, "role": "committee"},
    ("POST", "/api/v1/runs/{run_id}/survey"): {"codes": 5, "open_link": True},
    ("POST", "/api/v1/surveys/{survey_id}/close"): {},
    ("POST", "/api/v1/surveys/{survey_id}/paper"): {"answers": {"q_1": "满意"}},
    ("POST", "/api/v1/survey-answers/{answer_id}/hide"): {"reason": "不当言论"},
    ("PUT", "/api/v1/orgs/{org_id}/channels"): {
        "channels": [{"kind": "webhook", "url": "http://127.0.0.1:9/hook"}]
    },
    ("POST", "/api/v1/runs/{run_id}/board"): {"mask_names": True},
    ("POST", "/api/v1/campaigns/{campaign_id}/boards"): {"org_id": 1, "mask_names": True},
    ("POST", "/api/v1/campaigns/{campaign_id}/ledger"): {"per_branch": False},
    ("POST", "/api/v1/runs/{run_id}/findings"): {"text": "会议记录不全", "due": "2099-12-31"},
    ("POST", "/api/v1/orgs/{org_id}/findings"): {"text": "会议记录不全", "due": "2099-12-31"},
    ("POST", "/api/v1/findings/{finding_id}/response"): {"text": "已整改"},
    ("POST", "/api/v1/findings/{finding_id}/close"): {},
    ("POST", "/api/v1/orgs/{org_id}/notices"): {
        "title": "通报",
        "text": "现予通报",
        "orgs": [{"org_id": 1, "reason": "会议记录缺失"}],
    },
    ("PUT", "/api/v1/orgs/{org_id}/notice-templates/{event_kind}"): {
        "source": "{% block title %}T{% endblock %}{% block body %}B{% endblock %}"
    },
}


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, for comparing before and after."""
    out = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            rows = conn.execute(table.select()).all()
            out[table.name] = sorted(tuple(map(repr, r)) for r in rows)
    return out


def test_sibling_subtree_gets_404_on_every_route_with_an_id(world: World) -> None:
    w = world
    ids = _objects(w)
    # JSON routes only: the pages (api/web) answer HTML and are checked the same way, with
    # forms and a session cookie, in tests/test_web_matrix.py.
    routes = [r for r in api_routes(w.client.app) if r.path_format.startswith("/api/")]  # type: ignore[arg-type]
    before = snapshot(w.engine)
    checked = []
    for route in routes:
        params = ID_PARAM.findall(route.path_format)
        if not params or route.path_format in GLOBAL:
            continue
        url = route.path_format.format(**{p: ids[p] for p in params})
        for method in sorted(route.methods):
            kwargs: dict[str, Any] = {}
            if method in ("POST", "PUT", "PATCH"):
                body = BODIES.get((method, route.path_format))
                assert body is not None, f"no sample body for {method} {route.path_format}"
                kwargs = {"json": body, "headers": {"Idempotency-Key": f"k-{route.path_format}"}}
            resp = w.client.request(
                method,
                url,
                **{**kwargs, "headers": {**w.as_("admin_h2"), **kwargs.get("headers", {})}},
            )
            assert resp.status_code == 404, (method, url, resp.status_code, resp.text)
            body = resp.json()
            assert body["code"] == "not_found" and body["message"], body
            checked.append(f"{method} {route.path_format}")
    assert snapshot(w.engine) == before
    # Every kind of object was tried, reads and writes.
    assert len(checked) >= 17
    for path in ("/api/v1/orgs/{org_id}", "/api/v1/campaigns/{campaign_id}/runs"):
        assert f"GET {path}" in checked
    # The same ids answer the owner's side of the tree (so the 404s above are about reach).
    assert w.get("com_h1", f"/api/v1/campaigns/{ids['campaign_id']}").status_code == 200
    assert w.get("sec_s1", f"/api/v1/runs/{ids['run_id']}").status_code == 200
    assert w.get("com_g1", f"/api/v1/requests/{ids['request_id']}").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"template": "chuangxian_zhengyou", "root_org_id": "H1"},
    ],
)
def test_sibling_cannot_launch_or_preview_in_another_subtree(
    world: World, body: dict[str, Any]
) -> None:
    w = world
    body = {**body, "root_org_id": w.orgs["H1"].id}
    before = snapshot(w.engine)
    for url in ("/api/v1/campaigns", "/api/v1/campaigns/preview"):
        resp = w.post("admin_h2", url, json=body)
        assert resp.status_code == 404, resp.text
    assert snapshot(w.engine) == before


def test_no_token_is_401_everywhere_but_login_and_health(world: World) -> None:
    w = world
    # Pages answer a missing session with a 303 to /login instead (tests/test_web_pages.py).
    for route in api_routes(w.client.app):  # type: ignore[arg-type]
        if not route.path_format.startswith("/api/") and route.path_format != "/healthz":
            continue
        url = re.sub(r"\{\w+\}", "1", route.path_format)
        for method in route.methods:
            resp = w.client.request(method, url)
            if route_access(route) == "public":
                assert resp.status_code != 401, url
            else:
                assert resp.status_code == 401, (method, url, resp.status_code)
                assert resp.json()["code"] == "unauthenticated"
                assert resp.headers["WWW-Authenticate"] == "Bearer"

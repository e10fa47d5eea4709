"""Users and grants through the API: the organisation pages' rules, reach, audit.

World (tests/api_world.py): B → H1 → G1 → S1, S2; H1 → S3; B → H2 → S4. `org_h1` is an
organiser of H1, `admin_b` an admin of B, `admin_h2` holds every role on the sibling H2.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from states.models import AuditEvent, Grant, User
from states.tokens import issue_token
from tests.api_world import World
from tests.test_api_matrix import snapshot


def ids(w: World, code: str) -> int:
    return w.orgs[code].id or 0


def new_user(w: World, who: str, org: str, **body: Any) -> Any:
    body = {"username": "zhang_s3", "display_name": "张同志", "role": "secretary", **body}
    return w.post(who, f"/api/v1/orgs/{ids(w, org)}/users", json=body)


def audit_actions(w: World) -> list[str]:
    with Session(w.engine) as s:
        rows = s.execute(select(AuditEvent.action).where(col(AuditEvent.stream) == "user"))
        return [str(a) for (a,) in rows]


def grant_id(w: World, who: str, org: str) -> int:
    with Session(w.engine) as s:
        return int(
            s.execute(
                select(Grant.id).where(
                    col(Grant.user_id) == w.actors[who].user_id, col(Grant.org_id) == ids(w, org)
                )
            ).scalar_one()
        )


def test_list_users_of_a_subtree(world: World) -> None:
    w = world
    resp = w.get("org_h1", f"/api/v1/orgs/{ids(w, 'G1')}/users", params={"limit": 2})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    # Grants on G1 or below: com_g1, dual (S1 and G1), sec_s1, sec_s2.
    assert page["total"] == 4 and [u["username"] for u in page["items"]] == ["com_g1", "dual"]
    dual = page["items"][1]
    assert sorted((g["org"]["code"], g["role"]) for g in dual["grants"]) == [
        ("G1", "committee"),
        ("S1", "secretary"),
    ]
    rest = w.get("org_h1", f"/api/v1/orgs/{ids(w, 'G1')}/users", params={"offset": 2}).json()
    assert [u["username"] for u in rest["items"]] == ["sec_s1", "sec_s2"]
    # Grants above the organisation are not listed (com_h1 holds H1, not G1).
    assert "com_h1" not in {u["username"] for u in rest["items"] + page["items"]}
    # Outside the subtree 404; in reach without managing 403; no manage role anywhere 403.
    assert w.get("admin_h2", f"/api/v1/orgs/{ids(w, 'G1')}/users").status_code == 404
    assert w.get("sec_s1", f"/api/v1/orgs/{ids(w, 'S1')}/users").status_code == 403


def test_add_a_user_with_a_grant_and_an_initial_password(world: World) -> None:
    w = world
    resp = new_user(w, "org_h1", "S3", email="zhang@example.org")
    assert resp.status_code == 201, resp.text
    out = resp.json()
    password = out["initial_password"]
    assert len(password) == 12
    assert out["user"]["must_change_password"] is True
    assert [(g["org"]["code"], g["role"]) for g in out["user"]["grants"]] == [("S3", "secretary")]
    with Session(w.engine) as s:
        user = s.execute(select(User).where(col(User.username) == "zhang_s3")).scalar_one()
        assert password not in user.password_hash and user.must_change_password
    # The account logs in with it and must change it before anything else.
    token = w.client.post(
        "/api/v1/auth/token", json={"username": "zhang_s3", "password": password}
    ).json()["access_token"]
    resp = w.client.get("/api/v1/me/runs", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 403 and resp.json()["details"]["rule"] == "must_change_password"
    assert audit_actions(w)[-2:] == ["user.created", "grant.added"]


def test_adding_refuses_with_the_field_or_the_rule(world: World) -> None:
    w = world
    before = snapshot(w.engine)
    cases = [
        (new_user(w, "org_h1", "S3", username="-bad"), 422, "username"),
        (new_user(w, "org_h1", "S3", display_name="=HYPERLINK()"), 422, "display_name"),
        (new_user(w, "org_h1", "S3", role="king"), 422, "role"),
        (new_user(w, "org_h1", "S3", email="no-at-sign"), 422, "email"),
        (new_user(w, "org_h1", "S3", state="active"), 422, "state"),
        (new_user(w, "org_h1", "S3", username="sec_s1"), 409, "username_taken"),
        (new_user(w, "org_h1", "S3", role="admin"), 403, "admin_by_admin"),
        (new_user(w, "com_h1", "S3"), 403, "roles"),
        (new_user(w, "admin_h2", "S3"), 404, None),
    ]
    for resp, status, what in cases:
        assert resp.status_code == status, (what, resp.text)
        if what is not None:
            assert what in resp.text, (what, resp.text)
    assert snapshot(w.engine) == before
    # An admin above may make an admin.
    assert new_user(w, "admin_b", "S3", role="admin").status_code == 201


def test_grant_and_revoke(world: World) -> None:
    w = world
    user_id = w.actors["sec_s1"].user_id
    url = f"/api/v1/users/{user_id}/grants"
    resp = w.post("org_h1", url, json={"org_id": ids(w, "G1"), "role": "supervisor"})
    assert resp.status_code == 201, resp.text
    grant = resp.json()
    assert grant["org"]["code"] == "G1" and grant["role_label"] == "督导"
    again = w.post("org_h1", url, json={"org_id": ids(w, "G1"), "role": "supervisor"})
    assert again.status_code == 409 and again.json()["details"]["rule"] == "already_granted"
    refused = w.post("org_h1", url, json={"org_id": ids(w, "G1"), "role": "admin"})
    assert refused.status_code == 403 and refused.json()["details"]["rule"] == "admin_by_admin"
    outside = w.post("org_h1", url, json={"org_id": ids(w, "H2"), "role": "committee"})
    assert outside.status_code == 404
    missing = w.post("org_h1", url, json={"org_id": ids(w, "G1")})
    assert missing.status_code == 422 and "role" in missing.text
    resp = w.client.delete(f"/api/v1/grants/{grant['id']}", headers=w.as_("org_h1"))
    assert resp.status_code == 200 and resp.json()["id"] == grant["id"]
    assert (
        w.client.delete(f"/api/v1/grants/{grant['id']}", headers=w.as_("org_h1")).status_code == 404
    )
    assert audit_actions(w)[-2:] == ["grant.added", "grant.revoked"]


def test_revoking_follows_the_rules(world: World) -> None:
    w = world
    own = w.client.delete(f"/api/v1/grants/{grant_id(w, 'org_h1', 'H1')}", headers=w.as_("org_h1"))
    assert own.status_code == 409 and own.json()["details"]["rule"] == "own_grant"
    admin = w.client.delete(
        f"/api/v1/grants/{grant_id(w, 'admin_b', 'B')}", headers=w.as_("org_h1")
    )
    assert admin.status_code == 404  # B is above the organiser's reach
    # An organiser of B cannot revoke the admin role, even in reach.
    admin = w.client.delete(f"/api/v1/grants/{grant_id(w, 'admin_b', 'B')}", headers=w.as_("org_b"))
    assert admin.status_code == 403 and admin.json()["details"]["rule"] == "admin_by_admin"


def test_the_sibling_subtree_gets_404_and_nothing_changes(world: World) -> None:
    w = world
    before = snapshot(w.engine)
    user_id, grant = w.actors["sec_s1"].user_id, grant_id(w, "sec_s1", "S1")
    h2 = ids(w, "H2")
    calls = [
        w.get("admin_h2", f"/api/v1/orgs/{ids(w, 'S1')}/users"),
        new_user(w, "admin_h2", "S1"),
        # A user of H1 granted a role in H2's own subtree: the user is out of reach.
        w.post(
            "admin_h2", f"/api/v1/users/{user_id}/grants", json={"org_id": h2, "role": "committee"}
        ),
        w.client.delete(f"/api/v1/grants/{grant}", headers=w.as_("admin_h2")),
    ]
    assert [c.status_code for c in calls] == [404] * 4, [c.text for c in calls]
    assert all(c.json()["code"] == "not_found" for c in calls)
    assert snapshot(w.engine) == before
    # The same calls succeed on the owner's side (so the 404s were about reach).
    resp = w.post(
        "admin_b", f"/api/v1/users/{user_id}/grants", json={"org_id": h2, "role": "committee"}
    )
    assert resp.status_code == 201, resp.text


def test_a_new_user_is_listed_and_can_be_granted_more(world: World) -> None:
    w = world
    made = new_user(w, "org_h1", "S3").json()["user"]
    listed = w.get("org_h1", f"/api/v1/orgs/{ids(w, 'S3')}/users").json()["items"]
    assert made["id"] in {u["id"] for u in listed}
    resp = w.post(
        "org_h1",
        f"/api/v1/users/{made['id']}/grants",
        json={"org_id": ids(w, "H1"), "role": "committee"},
    )
    assert resp.status_code == 201, resp.text
    with Session(w.engine) as s:
        token = issue_token(s, made["id"]).token
        s.commit()
    me = w.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200

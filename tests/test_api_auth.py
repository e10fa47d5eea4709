"""Log-in, tokens, rate limit, who am I."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from states.models import ApiToken, LoginFailure
from states.timeutil import utcnow
from states.tokens import MAX_FAILURES_PER_USER, issue_token, token_digest
from tests.api_world import World

PASSWORD = "password-123"  # tests/factories.py


def test_login_gives_a_working_token_stored_only_as_a_hash(world: World) -> None:
    w = world
    resp = w.client.post("/api/v1/auth/token", json={"username": "sec_s1", "password": PASSWORD})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    token = body["access_token"]
    assert body["token_type"] == "bearer" and body["expires_in"] == 12 * 3600
    assert body["expires_at"].endswith("+08:00")
    me = w.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["username"] == "sec_s1"
    with Session(w.engine) as s:
        hashes = list(s.execute(select(ApiToken.token_hash)).scalars())
    assert token_digest(token) in hashes
    assert token not in hashes


def test_wrong_password_and_unknown_user_look_the_same(world: World) -> None:
    w = world
    a = w.client.post("/api/v1/auth/token", json={"username": "sec_s1", "password": "nope-nope"})
    b = w.client.post("/api/v1/auth/token", json={"username": "ghost", "password": "nope-nope"})
    assert a.status_code == b.status_code == 401
    assert a.json() == b.json()
    assert a.json()["message"] == "用户名或密码错误"


def test_login_rate_limit_gives_429_with_retry_after(world: World) -> None:
    w = world
    for _ in range(MAX_FAILURES_PER_USER):
        r = w.client.post(
            "/api/v1/auth/token", json={"username": "com_g1", "password": "wrong-pass"}
        )
        assert r.status_code == 401
    # Now even the right password is refused until the window passes.
    r = w.client.post("/api/v1/auth/token", json={"username": "com_g1", "password": PASSWORD})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60 + 1
    assert r.json()["code"] == "rate_limited"
    # Other users are not affected by com_g1's failures.
    ok = w.client.post("/api/v1/auth/token", json={"username": "com_h1", "password": PASSWORD})
    assert ok.status_code == 200
    # Once the failures age out of the window, the right password works again.
    with Session(w.engine) as s:
        for f in s.execute(select(LoginFailure)).scalars():
            f.at = utcnow() - timedelta(minutes=16)
        s.commit()
    r = w.client.post("/api/v1/auth/token", json={"username": "com_g1", "password": PASSWORD})
    assert r.status_code == 200


def test_expired_and_revoked_tokens_are_refused(world: World) -> None:
    w = world
    with Session(w.engine) as s:
        old = issue_token(s, w.actors["sec_s1"].user_id, now=utcnow() - timedelta(hours=13))
        s.commit()
    r = w.client.get("/api/v1/me", headers={"Authorization": f"Bearer {old.token}"})
    assert r.status_code == 401 and r.json()["message"] == "登录已失效，请重新登录"
    token = w.client.post(
        "/api/v1/auth/token", json={"username": "sec_s1", "password": PASSWORD}
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert w.client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert w.client.get("/api/v1/me", headers=headers).status_code == 401
    assert (
        w.client.get("/api/v1/me", headers={"Authorization": "Bearer garbage"}).status_code == 401
    )


def test_me_lists_grants_and_reach(world: World) -> None:
    w = world
    body = w.get("dual", "/api/v1/me").json()
    roles = sorted((g["org"]["code"], g["role"]) for g in body["grants"])
    assert roles == [("G1", "committee"), ("S1", "secretary")]
    # S1 lies inside G1's subtree, so the reach is G1 alone.
    assert [o["code"] for o in body["reach"]] == ["G1"]
    assert [g["role_label"] for g in body["grants"]] != []

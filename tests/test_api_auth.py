"""Log-in, tokens, rate limit, who am I."""

from __future__ import annotations

import ipaddress
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from api.clientaddr import client_key, parse_ip, parse_trusted, resolve_client
from states.models import ApiToken, LoginFailure
from states.timeutil import utcnow
from states.tokens import MAX_FAILURES_PER_PAIR, issue_token, token_digest
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
    for _ in range(MAX_FAILURES_PER_PAIR):
        r = w.client.post(
            "/api/v1/auth/token", json={"username": "com_g1", "password": "wrong-pass"}
        )
        assert r.status_code == 401
    # Now even the right password is refused until the window passes.
    r = w.client.post("/api/v1/auth/token", json={"username": "com_g1", "password": PASSWORD})
    assert r.status_code == 429
    assert 1 <= int(r.headers["Retry-After"]) <= 15 * 60 + 1
    assert r.json()["code"] == "rate_limited"
    # Refused attempts are not checked and not counted: the window does not grow.
    with Session(w.engine) as s:
        assert len(s.execute(select(LoginFailure)).all()) == MAX_FAILURES_PER_PAIR
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


def _login(client: TestClient, username: str, password: str, **headers: str) -> int:
    body = {"username": username, "password": password}
    return client.post("/api/v1/auth/token", json=body, headers=headers).status_code


def _stored_clients(w: World) -> set[str]:
    with Session(w.engine) as s:
        return set(s.execute(select(LoginFailure.client)).scalars())


def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world
    app = w.client.app
    proxy = TestClient(app, raise_server_exceptions=False, client=("127.0.0.9", 40000))
    monkeypatch.delenv("DANGJIAN_TRUSTED_PROXIES", raising=False)
    for n in range(MAX_FAILURES_PER_PAIR):  # a different claimed address each time
        assert _login(proxy, "com_g1", "wrong-pass", **{"X-Forwarded-For": f"127.0.1.{n}"}) == 401
    assert _stored_clients(w) == {"127.0.0.9"}  # the socket's address, not the header's
    assert _login(proxy, "com_g1", PASSWORD, **{"X-Forwarded-For": "127.0.2.1"}) == 429
    # Behind a trusted proxy, the client is the right-most hop that is not a proxy.
    monkeypatch.setenv("DANGJIAN_TRUSTED_PROXIES", "127.0.0.9, 127.0.0.10/32")
    chain = "127.0.3.3, 127.0.3.4, 127.0.0.10"  # the left-most entry is the client's own claim
    assert _login(proxy, "com_h1", "wrong-pass", **{"X-Forwarded-For": chain}) == 401
    assert _stored_clients(w) == {"127.0.0.9", "127.0.3.4"}
    assert _login(proxy, "com_g1", PASSWORD, **{"X-Forwarded-For": "127.0.2.1"}) == 200
    # The header from an untrusted peer still counts for nothing.
    other = TestClient(app, raise_server_exceptions=False, client=("127.0.0.77", 40000))
    assert _login(other, "com_h1", "wrong-pass", **{"X-Forwarded-For": "127.0.0.9"}) == 401
    assert "127.0.0.77" in _stored_clients(w)


def test_client_address_rules() -> None:
    nets = parse_trusted("10.0.0.0/8, fd00::/8, not-an-address")
    assert len(nets) == 2  # the bad entry is skipped (and logged), not fatal
    assert str(resolve_client("10.1.1.1", [" 203.0.113.9 ", "10.2.2.2"], nets)) == "203.0.113.9"
    assert str(resolve_client("10.1.1.1", ["10.3.3.3", "10.2.2.2"], nets)) == "10.3.3.3"
    assert str(resolve_client("10.1.1.1", ["198.51.100.1", "garbage"], nets)) == "10.1.1.1"
    assert str(resolve_client("192.0.2.1", ["10.2.2.2"], nets)) == "192.0.2.1"
    assert resolve_client("testclient", ["192.0.2.1"], nets) is None
    assert str(parse_ip("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_ip("192.0.2.7:8080")) == "192.0.2.7"
    assert str(parse_ip("::ffff:192.0.2.7")) == "192.0.2.7"
    six = ipaddress.ip_address("2001:db8:1:2:3:4:5:6")
    assert client_key(six) == "2001:db8:1:2::/64"  # one subscriber's /64 is one client


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

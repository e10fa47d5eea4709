"""Sign in with WeCom, DingTalk or Feishu, against a stand-in speaking each platform's protocol.

Every flow goes the real way: the button's POST gives a 303 to the stand-in's sign-in page, the
test opens that page over HTTP and follows the user's "确认登录" link, which sends it back to our
callback with a code and the state; the callback asks the stand-in's token and user endpoints.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from states.models import ApiToken, AuditEvent, User
from states.sso import providers
from states.sso.models import SsoIdentity, SsoState
from states.timeutil import utcnow
from states.tokens import token_digest
from tests.api_world import World
from tests.browser import WebUser, csrf_of, web_user
from tests.sso_stand_ins import SsoServer, sso_server
from tests.stand_ins import free_port

PROVIDERS = ("wecom", "dingtalk", "feishu")
LABEL = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}


@pytest.fixture(scope="module")
def stand_in() -> Iterator[SsoServer]:
    with sso_server() as sso:
        for p in PROVIDERS:
            sso.add_user(p, f"{p}-zhang", "张支书")
            sso.add_user(p, f"{p}-li", "李委员")
            sso.add_user(p, f"{p}-stranger", "未绑定的人")
        yield sso


@pytest.fixture
def sso(stand_in: SsoServer, monkeypatch: pytest.MonkeyPatch) -> SsoServer:
    """The stand-in, configured for all three platforms."""
    for key, value in stand_in.env().items():
        monkeypatch.setenv(key, value)
    stand_in.stall = 0.0
    return stand_in


# --------------------------------------------------------------------------- helpers


def anonymous(w: World) -> WebUser:
    client = TestClient(w.client.app, raise_server_exceptions=False)
    return WebUser(client, csrf_of(client.get("/login").text))


def to_platform(user: WebUser, url: str) -> str:
    """POST a sign-in or bind button; return the platform URL it sends the browser to."""
    resp = user.post(url)
    assert resp.status_code == 303, resp.text[:300]
    return str(resp.headers["location"])


def confirm(sso: SsoServer, platform_url: str, subject: str) -> str:
    """Open the stand-in's sign-in page, click the user's 确认登录; return our callback URL."""
    page = httpx.get(platform_url)
    assert page.status_code == 200, page.text
    links = dict(re.findall(r'data-subject="([^"]+)" href="([^"]+)"', page.text))
    href = links[subject].replace("&amp;", "&")
    back = httpx.get(sso.base_url + href, follow_redirects=False)
    assert back.status_code == 302
    return str(back.headers["location"])


def callback(user: WebUser, url: str) -> Any:
    parts = urllib.parse.urlsplit(url)
    return user.get(parts.path + "?" + parts.query)


def sign_in(w: World, sso: SsoServer, provider: str, subject: str) -> tuple[WebUser, Any]:
    user = anonymous(w)
    url = confirm(sso, to_platform(user, f"/sso/{provider}/login"), subject)
    return user, callback(user, url)


def bind(w: World, sso: SsoServer, username: str, provider: str, subject: str) -> Any:
    user = web_user(w.client.app, username)
    url = confirm(sso, to_platform(user, f"/account/sso/{provider}/bind"), subject)
    return callback(user, url)


def identities(w: World) -> list[tuple[str, str, str]]:
    with Session(w.engine) as s:
        rows = s.execute(
            select(User.username, SsoIdentity.provider, SsoIdentity.subject).join(
                User, col(User.id) == col(SsoIdentity.user_id)
            )
        ).all()
    return sorted((str(a), str(b), str(c)) for a, b, c in rows)


def has_session(resp: Any) -> bool:
    return "dj_session=" in resp.headers.get("set-cookie", "")


def audit_actions(w: World) -> list[str]:
    with Session(w.engine) as s:
        rows = s.execute(select(AuditEvent.action).where(AuditEvent.stream == "user")).all()
    return [str(r[0]) for r in rows]


def state_of(platform_url: str) -> str:
    return urllib.parse.parse_qs(urllib.parse.urlsplit(platform_url).query)["state"][0]


# --------------------------------------------------------------------------- the happy paths


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bind_on_my_account_then_log_in_with_the_platform(
    world: World, sso: SsoServer, provider: str
) -> None:
    w = world
    done = bind(w, sso, "sec_s1", provider, f"{provider}-zhang")
    assert done.status_code == 303 and done.headers["location"] == "/account"
    assert identities(w) == [("sec_s1", provider, f"{provider}-zhang")]
    assert "user.sso_bound" in audit_actions(w)

    user = anonymous(w)
    login_page = user.get("/login").text
    assert f"使用{LABEL[provider]}登录" in login_page
    platform = to_platform(user, f"/sso/{provider}/login")
    assert platform.startswith(sso.base_url)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(platform).query)
    assert query["redirect_uri"] == [f"http://testserver/sso/{provider}/callback"]
    assert len(query["state"][0]) >= 40
    back = callback(user, confirm(sso, platform, f"{provider}-zhang"))
    assert back.status_code == 303 and back.headers["location"] == "/"
    assert has_session(back)
    desk = user.get("/")
    assert desk.status_code == 200 and "退出" in desk.text
    with Session(w.engine) as s:
        labels = s.execute(
            select(ApiToken.label).where(ApiToken.user_id == w.actors["sec_s1"].user_id)
        ).all()
    assert ("web",) in [tuple(r) for r in labels]


def test_the_account_page_shows_each_platform_and_the_header_links_it(
    world: World, sso: SsoServer
) -> None:
    user = web_user(world.client.app, "sec_s1")
    assert 'href="/account"' in user.get("/").text
    page = user.get("/account").text
    for label in LABEL.values():
        assert f"绑定{label}" in page
    assert "未绑定" in page and "修改密码" in page


def test_only_configured_platforms_are_offered(
    world: World, sso: SsoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DANGJIAN_SSO_WECOM_AGENTID")
    monkeypatch.delenv("DANGJIAN_SSO_FEISHU_APP_SECRET")
    user = anonymous(world)
    page = user.get("/login").text
    assert "使用钉钉登录" in page
    assert "使用企业微信登录" not in page and "使用飞书登录" not in page
    assert user.post("/sso/wecom/login").status_code == 404
    for key in [k for k in sso.env() if k.startswith("DANGJIAN_SSO_")]:
        monkeypatch.delenv(key, raising=False)
    assert "登录" in anonymous(world).get("/login").text
    assert "使用钉钉登录" not in anonymous(world).get("/login").text


@pytest.mark.parametrize("provider", PROVIDERS)
def test_an_unbound_platform_user_is_told_how_to_bind_and_no_account_is_made(
    world: World, sso: SsoServer, provider: str
) -> None:
    with Session(world.engine) as s:
        before = s.execute(select(func.count()).select_from(User)).scalar_one()
    _, resp = sign_in(world, sso, provider, f"{provider}-stranger")
    assert resp.status_code == 403 and not has_session(resp)
    text = resp.text
    label = LABEL[provider]
    assert f"这个{label}账号还没有绑定" in text
    assert "用户名和密码" in text and "我的账号" in text and f"绑定{label}" in text
    with Session(world.engine) as s:
        assert s.execute(select(func.count()).select_from(User)).scalar_one() == before
    assert identities(world) == []


def test_unbind_removes_the_binding_and_is_audited(world: World, sso: SsoServer) -> None:
    w = world
    assert bind(w, sso, "com_g1", "feishu", "feishu-li").status_code == 303
    user = web_user(w.client.app, "com_g1")
    assert "解除绑定飞书" in user.get("/account").text
    resp = user.post("/account/sso/feishu/unbind")
    assert resp.status_code == 303 and resp.headers["location"] == "/account"
    assert identities(w) == []
    assert "user.sso_unbound" in audit_actions(w)
    assert user.post("/account/sso/feishu/unbind").status_code == 404  # nothing left to unbind
    _, again = sign_in(w, sso, "feishu", "feishu-li")
    assert again.status_code == 403 and not has_session(again)


def test_an_initial_password_still_has_to_be_changed(world: World, sso: SsoServer) -> None:
    w = world
    bind(w, sso, "sec_s2", "wecom", "wecom-li")
    with Session(w.engine) as s:
        s.execute(
            update(User).where(col(User.username) == "sec_s2").values(must_change_password=True)
        )
        s.commit()
    user, resp = sign_in(w, sso, "wecom", "wecom-li")
    assert resp.status_code == 303 and resp.headers["location"] == "/account/password"
    assert user.get("/").headers["location"] == "/account/password"


# --------------------------------------------------------------------------- refusals


def test_a_platform_account_bound_to_someone_else_is_refused(world: World, sso: SsoServer) -> None:
    w = world
    bind(w, sso, "sec_s1", "dingtalk", "dingtalk-zhang")
    resp = bind(w, sso, "sec_s2", "dingtalk", "dingtalk-zhang")
    assert resp.status_code == 409
    assert "已绑定本系统的另一个用户" in resp.text
    again = bind(w, sso, "sec_s1", "dingtalk", "dingtalk-li")
    assert again.status_code == 409 and "请先解除绑定" in again.text
    assert identities(w) == [("sec_s1", "dingtalk", "dingtalk-zhang")]


def test_an_inactive_user_is_refused(world: World, sso: SsoServer) -> None:
    w = world
    bind(w, sso, "com_h1", "wecom", "wecom-zhang")
    with Session(w.engine) as s:
        s.execute(update(User).where(col(User.username) == "com_h1").values(is_active=False))
        s.commit()
    _, resp = sign_in(w, sso, "wecom", "wecom-zhang")
    assert resp.status_code == 403 and "已停用" in resp.text and not has_session(resp)


def _refused(resp: Any, words: str) -> None:
    assert resp.status_code == 400, resp.text[:300]
    assert words in resp.text and not has_session(resp)
    assert "text/html" in resp.headers["content-type"]


def test_state_missing_forged_or_from_another_browser_is_refused(
    world: World, sso: SsoServer
) -> None:
    w = world
    bind(w, sso, "sec_s1", "wecom", "wecom-zhang")
    user = anonymous(w)
    url = confirm(sso, to_platform(user, "/sso/wecom/login"), "wecom-zhang")
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["code"][0]
    _refused(user.get(f"/sso/wecom/callback?code={code}"), "不是由本浏览器发起的")
    _refused(user.get(f"/sso/wecom/callback?code={code}&state=forged"), "不是由本浏览器发起的")
    other = anonymous(w)  # the callback URL opened in another browser: no state cookie
    _refused(callback(other, url), "不是由本浏览器发起的")
    forger = TestClient(w.client.app, raise_server_exceptions=False)
    forged = forger.get(
        f"/sso/wecom/callback?code={code}&state=forged",
        headers={"cookie": "dj_sso=login.forged"},
        follow_redirects=False,
    )
    _refused(forged, "不是本系统发出的")
    ok = callback(user, url)  # nothing above used the state: the real browser still gets in
    assert ok.status_code == 303 and has_session(ok)


def _with_cookie(w: World, url: str, cookie: str) -> Any:
    client = TestClient(w.client.app, raise_server_exceptions=False)
    parts = urllib.parse.urlsplit(url)
    return client.get(
        parts.path + "?" + parts.query, headers={"cookie": cookie}, follow_redirects=False
    )


def test_the_same_callback_a_second_time_is_refused(world: World, sso: SsoServer) -> None:
    w = world
    bind(w, sso, "sec_s1", "feishu", "feishu-zhang")
    user = anonymous(w)
    platform = to_platform(user, "/sso/feishu/login")
    url = confirm(sso, platform, "feishu-zhang")
    assert callback(user, url).status_code == 303
    replay = _with_cookie(w, url, f"dj_sso=login.{state_of(platform)}")
    _refused(replay, "已经用过")


def test_an_expired_state_is_refused(world: World, sso: SsoServer) -> None:
    w = world
    user = anonymous(w)
    platform = to_platform(user, "/sso/dingtalk/login")
    url = confirm(sso, platform, "dingtalk-zhang")
    with Session(w.engine) as s:
        s.execute(
            update(SsoState)
            .where(col(SsoState.state) == state_of(platform))
            .values(created_at=utcnow() - timedelta(minutes=11))
        )
        s.commit()
    _refused(callback(user, url), "已过期")


def test_a_state_for_another_purpose_or_platform_is_refused(world: World, sso: SsoServer) -> None:
    w = world
    member = web_user(w.client.app, "sec_s1")
    platform = to_platform(member, "/account/sso/wecom/bind")
    url = confirm(sso, platform, "wecom-zhang")
    state = state_of(platform)
    _refused(_with_cookie(w, url, f"dj_sso=login.{state}"), "另一项操作")
    elsewhere = url.replace("/sso/wecom/", "/sso/feishu/")
    _refused(_with_cookie(w, elsewhere, f"dj_sso=bind.{state}"), "不是为这个平台发出的")
    # A bind state arriving in a browser where another user is logged in binds nothing.
    intruder = web_user(w.client.app, "sec_s2")
    session = intruder.client.cookies.get("dj_session")
    resp = _with_cookie(w, url, f"dj_session={session}; dj_sso=bind.{state}")
    assert resp.status_code == 400 and "不是由当前登录的用户发起的" in resp.text
    assert identities(w) == []


# --------------------------------------------------------------------------- the platform says no


def test_a_reused_code_is_refused_by_the_platform(world: World, sso: SsoServer) -> None:
    w = world
    for provider, words in (
        ("wecom", "40029"),
        ("dingtalk", "invalidAuthCode"),
        ("feishu", "20065"),
    ):
        user = anonymous(w)
        url = confirm(sso, to_platform(user, f"/sso/{provider}/login"), f"{provider}-zhang")
        code_param = "authCode" if provider == "dingtalk" else "code"
        code = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)[code_param][0]
        assert callback(user, url).status_code == 403  # unbound: the code was used
        fresh = to_platform(user, f"/sso/{provider}/login")
        reuse = f"/sso/{provider}/callback?{code_param}={code}&state={state_of(fresh)}"
        resp = user.get(reuse)
        assert resp.status_code == 502, (provider, resp.text[:300])
        assert words in resp.text and "拒绝" in resp.text and not has_session(resp)


@pytest.mark.parametrize(
    ("provider", "secret_env", "words"),
    [
        ("wecom", "DANGJIAN_SSO_WECOM_SECRET", "40001"),
        ("dingtalk", "DANGJIAN_SSO_DINGTALK_CLIENT_SECRET", "InvalidAuthentication"),
        ("feishu", "DANGJIAN_SSO_FEISHU_APP_SECRET", "20002"),
    ],
)
def test_a_wrong_secret_gives_the_platforms_refusal_in_a_page(
    world: World,
    sso: SsoServer,
    monkeypatch: pytest.MonkeyPatch,
    provider: str,
    secret_env: str,
    words: str,
) -> None:
    monkeypatch.setenv(secret_env, "not-the-secret")
    _, resp = sign_in(world, sso, provider, f"{provider}-zhang")
    assert resp.status_code == 502 and words in resp.text and "联系管理员" in resp.text
    assert not has_session(resp)


def test_a_slow_or_unreachable_platform_gives_a_clear_page(
    world: World, sso: SsoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(providers, "TIMEOUT", 0.3)
    user = anonymous(world)
    url = confirm(sso, to_platform(user, "/sso/feishu/login"), "feishu-zhang")
    sso.stall = 1.0
    try:
        slow = callback(user, url)
    finally:
        sso.stall = 0.0
    assert slow.status_code == 502 and "超时" in slow.text
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("DANGJIAN_SSO_DINGTALK_API_URL", closed)
    _, down = sign_in(world, sso, "dingtalk", "dingtalk-zhang")
    assert down.status_code == 502 and "无法连接钉钉" in down.text


def test_the_platform_is_reached_only_through_the_guarded_client(
    world: World, sso: SsoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DANGJIAN_OUTBOUND_ALLOW", "")  # loopback no longer allowed
    _, resp = sign_in(world, sso, "wecom", "wecom-zhang")
    assert resp.status_code == 502 and "无法连接企业微信" in resp.text


def test_signing_in_over_an_older_session_ends_that_session(world: World, sso: SsoServer) -> None:
    w = world
    bind(w, sso, "sec_s1", "wecom", "wecom-zhang")
    shared = web_user(w.client.app, "sec_s2")  # someone else's session in this browser
    before = shared.client.cookies.get("dj_session")
    url = confirm(sso, to_platform(shared, "/sso/wecom/login"), "wecom-zhang")
    assert callback(shared, url).status_code == 303
    assert shared.client.cookies.get("dj_session") != before
    with Session(w.engine) as s:
        old = s.execute(
            select(ApiToken.revoked_at).where(ApiToken.token_hash == token_digest(str(before)))
        ).scalar_one()
    assert old is not None
    assert shared.get("/").status_code == 200  # the new session (sec_s1) works

"""Accounts: password rules, changing one's password (API and pages), resets, `users import`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from api.cli import main
from states.accounts import initial_password, password_problems
from states.models import ApiToken, AuditEvent, Grant, Organisation, User
from tests.api_world import World
from tests.browser import DESKTOP, PASSWORD, PHONE, LiveWorld, csrf_of, login, shot, web_user

if TYPE_CHECKING:
    from playwright.sync_api import Browser

NEW = "Hongqi2027x"


@pytest.fixture
def cli(world: World, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The command line on the world's database."""
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DANGJIAN_DATA_DIR", str(tmp_path / "data"))

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    return invoke


def _user(w: World, username: str) -> User:
    with Session(w.engine) as s:
        user = s.execute(select(User).where(User.username == username)).scalar_one()
        s.expunge(user)
        return user


def _login(client: TestClient, username: str, password: str) -> Any:
    return client.post("/api/v1/auth/token", json={"username": username, "password": password})


# --------------------------------------------------------------------------- rules


def test_password_rules_in_chinese() -> None:
    assert password_problems("Hongqi2027x", username="zhang") == []
    assert "密码至少 8 位" in password_problems("ab12", username="zhang")
    assert "密码须同时包含字母和数字" in password_problems("abcdefghij", username="zhang")
    assert "密码须同时包含字母和数字" in password_problems("1234567890123", username="zhang")
    assert "密码不能包含用户名" in password_problems("Zhangsan2027", username="zhangsan")
    assert "新密码不能与原密码相同" in password_problems(
        "Hongqi2027x", username="z", old_password="Hongqi2027x"
    )
    assert "密码过于常见，容易被猜中，请换一个" in password_problems("Password123", username="z")
    assert "密码首尾不能是空格" in password_problems(" Hongqi2027x", username="z")
    assert any("最长" in p for p in password_problems("a1" * 40, username="z"))
    for _ in range(50):
        pw = initial_password()
        assert len(pw) == 12 and password_problems(pw, username="someone") == []


# --------------------------------------------------------------------------- API


def test_change_password_revokes_other_tokens_but_not_the_callers(world: World) -> None:
    w = world
    other = _login(w.client, "sec_s1", PASSWORD).json()["access_token"]
    other_h = {"Authorization": f"Bearer {other}"}
    url = "/api/v1/me/password"
    weak = w.post("sec_s1", url, json={"old_password": PASSWORD, "new_password": "abcdefgh"})
    assert weak.status_code == 422
    body = weak.json()
    assert body["code"] == "invalid_input" and "字母和数字" in body["message"]
    assert body["details"]["field"] == "new_password"
    wrong = w.post("sec_s1", url, json={"old_password": "nope-1234", "new_password": NEW})
    assert wrong.status_code == 422 and wrong.json()["details"]["field"] == "old_password"
    assert wrong.json()["message"] == "原密码不正确"
    extra = w.post("sec_s1", url, json={"old_password": PASSWORD, "new_password": NEW, "x": 1})
    assert extra.status_code == 422
    assert w.client.get("/api/v1/me", headers=other_h).status_code == 200  # nothing changed yet

    ok = w.post("sec_s1", url, json={"old_password": PASSWORD, "new_password": NEW})
    assert ok.status_code == 200, ok.text
    assert ok.json()["revoked_sessions"] == 1
    assert w.client.get("/api/v1/me", headers=other_h).status_code == 401
    assert w.get("sec_s1", "/api/v1/me").status_code == 200  # the caller's token stays
    assert _login(w.client, "sec_s1", PASSWORD).status_code == 401
    assert _login(w.client, "sec_s1", NEW).status_code == 200
    user = _user(w, "sec_s1")
    assert user.password_changed_at is not None and not user.must_change_password
    with Session(w.engine) as s:
        events = s.execute(
            select(AuditEvent.action, AuditEvent.data).where(AuditEvent.stream == "user")
        ).all()
    changed = [d for a, d in events if a == "user.password_changed"]
    assert changed and changed[0]["user_id"] == user.id
    assert NEW not in str(events) and PASSWORD not in str(events)
    # Other users' sessions are untouched.
    assert w.get("sec_s2", "/api/v1/me").status_code == 200


def test_wrong_old_passwords_are_rate_limited_like_log_in(world: World) -> None:
    w = world
    url = "/api/v1/me/password"
    codes = [
        w.post("sec_s2", url, json={"old_password": f"wrong-{i}x", "new_password": NEW}).status_code
        for i in range(6)
    ]
    assert codes == [422] * 5 + [429]
    # The limit is the log-in's: the same name from the same client is refused there too.
    assert _login(w.client, "sec_s2", PASSWORD).status_code == 429


# --------------------------------------------------------------------------- pages


def _reset(w: World, cli: Any, username: str) -> str:
    result = cli("users", "reset-password", "--username", username)
    assert result.exit_code == 0, result.output
    found = re.search(r"initial password: (\S+)", result.output)
    assert found, result.output
    return found.group(1)


def test_reset_cli_then_forced_change_on_the_pages(world: World, cli: Any) -> None:
    w = world
    before = web_user(w.client.app, "sec_s1")
    assert before.get("/").status_code == 200
    password = _reset(w, cli, "sec_s1")
    assert _user(w, "sec_s1").must_change_password
    assert before.get("/").status_code == 303  # every session of the user was revoked
    assert w.get("sec_s1", "/api/v1/me").status_code == 401
    assert cli("users", "reset-password", "--username", "nobody").exit_code == 1

    client = TestClient(w.client.app, raise_server_exceptions=False)
    token = csrf_of(client.get("/login?next=/approvals").text)
    form = {"csrf_token": token, "username": "sec_s1", "password": password, "next": "/runs/1"}
    resp = client.post("/login", data=form, follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == "/account/password?next=/runs/1"
    blocked = client.get("/", follow_redirects=False)
    assert blocked.status_code == 303 and blocked.headers["location"] == "/account/password"
    page = client.get("/account/password")
    assert page.status_code == 200 and "请先设置自己的新密码" in page.text
    csrf = csrf_of(page.text)
    data = {"csrf_token": csrf, "old_password": password, "new_password": NEW, "repeat": "x"}
    mismatch = client.post("/account/password", data=data, follow_redirects=False)
    assert mismatch.status_code == 422 and "两次输入的新密码不一致" in mismatch.text
    data["repeat"] = data["new_password"] = "shortpw"
    weak = client.post("/account/password", data=data, follow_redirects=False)
    assert weak.status_code == 422 and "密码至少 8 位" in weak.text
    data["repeat"] = data["new_password"] = NEW
    done = client.post("/account/password", data={**data, "next": "/"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert client.get("/", follow_redirects=False).status_code == 200
    assert not _user(w, "sec_s1").must_change_password


def test_password_page_change_keeps_this_session_and_ends_the_others(world: World) -> None:
    w = world
    here, elsewhere = web_user(w.client.app, "com_g1"), web_user(w.client.app, "com_g1")
    assert 'href="/account/password"' in here.get("/").text  # reachable from the header
    form = {"old_password": PASSWORD, "new_password": NEW, "repeat": NEW}
    no_csrf = here.client.post("/account/password", data=form, follow_redirects=False)
    assert no_csrf.status_code == 403
    wrong = here.post("/account/password", {**form, "old_password": "wrong-pass1"})
    assert wrong.status_code == 422 and "原密码不正确" in wrong.text
    assert here.post("/account/password", form).status_code == 303
    assert here.get("/").status_code == 200
    assert elsewhere.get("/").status_code == 303
    assert w.get("com_g1", "/api/v1/me").status_code == 401


def test_admin_reset_on_the_pages_within_reach(world: World) -> None:
    w = world
    s1, sec = w.orgs["S1"].id, w.actors["sec_s1"].user_id
    url = f"/orgs/{s1}/users/{sec}/password"
    sibling = web_user(w.client.app, "admin_h2")
    assert sibling.get(url).status_code == 404
    assert sibling.post(url).status_code == 404
    organiser = web_user(w.client.app, "org_h1")
    confirm = organiser.get(url)
    assert confirm.status_code == 200 and "确认重置密码" in confirm.text
    assert _user(w, "sec_s1").must_change_password is False  # a GET changes nothing
    g1 = w.orgs["G1"].id
    assert f'href="/orgs/{g1}/users/{sec}/password"' in organiser.get(f"/orgs/{g1}").text
    done = organiser.post(url)
    assert done.status_code == 200
    assert done.headers["cache-control"] == "no-store"
    shown = re.search(r'id="initial-password">([^<]+)<', done.text)
    assert shown is not None
    assert _login(w.client, "sec_s1", shown.group(1)).status_code == 200
    assert w.get("sec_s1", "/api/v1/me").status_code == 401
    assert _user(w, "sec_s1").must_change_password
    # An organiser never resets an admin; nobody resets herself here; others' orgs look missing.
    admin = w.actors["admin_b"].user_id
    assert organiser.get(f"/orgs/{w.orgs['H1'].id}/users/{admin}/password").status_code == 404
    me = w.actors["org_h1"].user_id
    assert organiser.get(f"/orgs/{w.orgs['H1'].id}/users/{me}/password").status_code == 403
    sec4 = w.actors["sec_s4"].user_id
    assert organiser.get(f"/orgs/{w.orgs['H1'].id}/users/{sec4}/password").status_code == 404


# --------------------------------------------------------------------------- users import

SHEET = """用户名,姓名,组织编码,角色,手机号
shuji_s2b,二支部书记,s2,书记,13800000001
weiyuan_g1b,总支委员乙,G1,committee,
weiyuan_g1b,总支委员乙,H1,督导,
sec_s1,sec_s1,S1,委员,
"""


def _write(tmp_path: Path, text: str, name: str = "users.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_users_import_creates_accounts_once(world: World, cli: Any, tmp_path: Path) -> None:
    w = world
    path = _write(tmp_path, SHEET)
    result = cli("users", "import", str(path))
    assert result.exit_code == 0, result.output
    assert "新建账号 2 个，新增授权 4 项" in result.output
    table = dict(re.findall(r"^(shuji_s2b|weiyuan_g1b)\s+(\S+)\s", result.output, re.M))
    assert set(table) == {"shuji_s2b", "weiyuan_g1b"}
    assert "sec_s1 " not in result.output.split("初始密码", 1)[1]  # existing: no password
    new = _user(w, "shuji_s2b")
    assert new.must_change_password and new.phone == "13800000001"
    assert _login(w.client, "shuji_s2b", table["shuji_s2b"]).status_code == 200
    assert _login(w.client, "sec_s1", PASSWORD).status_code == 200  # kept her password
    with Session(w.engine) as s:
        roles = s.execute(
            select(Organisation.code, Grant.role)
            .join(Grant, col(Grant.org_id) == col(Organisation.id))
            .join(User, col(User.id) == col(Grant.user_id))
            .where(User.username == "weiyuan_g1b")
            .order_by(col(Organisation.code))
        ).all()
        assert [tuple(r) for r in roles] == [("G1", "committee"), ("H1", "supervisor")]
        tokens_before = s.execute(select(ApiToken.id)).all()
    again = cli("users", "import", str(path))
    assert again.exit_code == 0 and "新建账号 0 个，新增授权 0 项，已有 4 项" in again.output
    assert "初始密码只显示这一次" not in again.output
    with Session(w.engine) as s:
        assert s.execute(select(ApiToken.id)).all() == tokens_before


def test_users_import_names_every_bad_row_and_writes_nothing(
    world: World, cli: Any, tmp_path: Path
) -> None:
    w = world
    bad = """username,name,org_code,role,phone
good_one,好用户,S1,secretary,
bad name,某甲,S1,secretary,
nobody_org,某乙,ZZ9,secretary,
bad_role,某丙,S1,主任,
bad_phone,某丁,S1,secretary,12345
twice,某戊,S1,secretary,
twice,某己,S2,secretary,
sec_s1,另一个人,S1,secretary,
formula,=cmd,S1,secretary,
"""
    with Session(w.engine) as s:
        users_before = s.execute(select(User.id)).all()
    result = cli("users", "import", str(_write(tmp_path, bad)))
    assert result.exit_code == 2
    out = result.output
    assert "未写入任何内容" in out
    for row, word in (
        (3, "用户名格式不正确"),
        (5, "角色"),
        (6, "手机号格式不正确"),
        (8, "已在第 7 行"),
        (10, "不能以 = + - @ 开头"),
        (4, "组织不存在：ZZ9"),
        (9, "用户名 sec_s1 已被“sec_s1”使用"),
    ):
        assert re.search(rf"第 {row} 行 \[[^\]]*\]：[^\n]*{re.escape(word)}", out), (row, out)
    assert "第 2 行" not in out and "7 行有误" in out
    with Session(w.engine) as s:
        assert s.execute(select(User.id)).all() == users_before
    missing = cli("users", "import", str(_write(tmp_path, "用户名,姓名\na,b\n")))
    assert missing.exit_code == 2 and "表头缺少列：组织编码、角色" in missing.output


# --------------------------------------------------------------------------- in Chromium


def test_chromium_password_change_on_a_phone_ends_the_other_session(
    live_world: LiveWorld, browser: Browser
) -> None:
    base = live_world.base_url
    desk = browser.new_context(viewport=DESKTOP, locale="zh-CN")
    phone = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True, locale="zh-CN"
    )
    try:
        other, mine = desk.new_page(), phone.new_page()
        login(other, base, "com_h1")
        login(mine, base, "com_h1")
        mine.click("a[href='/account/password']")  # from the header
        mine.wait_for_url(base + "/account/password")
        width = mine.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], width
        mine.fill("#old_password", PASSWORD)
        mine.fill("#new_password", "abcdefgh")
        mine.fill("#repeat", "abcdefgh")
        mine.click("form[action='/account/password'] button[type=submit]")
        assert "密码须同时包含字母和数字" in mine.inner_text("#new_password-err")
        shot(mine, "account-password-phone-error")
        mine.fill("#old_password", PASSWORD)
        mine.fill("#new_password", NEW)
        mine.fill("#repeat", NEW)
        mine.click("form[action='/account/password'] button[type=submit]")
        mine.wait_for_url(base + "/")
        assert "密码已修改" in mine.inner_text("main")
        other.goto(base + "/approvals")
        other.wait_for_url("**/login?next=/approvals")
        login(other, base, "com_h1", NEW)
    finally:
        desk.close()
        phone.close()


def test_an_api_token_of_an_initial_password_may_only_change_it(world: World, cli: Any) -> None:
    """A token from an initial or reset password reaches /me and /me/password, nothing else."""
    w = world
    password = _reset(w, cli, "sec_s1")
    got = w.client.post("/api/v1/auth/token", json={"username": "sec_s1", "password": password})
    assert got.status_code == 200
    auth = {"Authorization": f"Bearer {got.json()['access_token']}"}
    blocked = w.client.get("/api/v1/approvals", headers=auth)
    assert blocked.status_code == 403
    assert blocked.json()["details"]["rule"] == "must_change_password"
    assert w.client.get("/api/v1/me", headers=auth).status_code == 200
    body = {"old_password": password, "new_password": NEW}
    assert w.client.post("/api/v1/me/password", json=body, headers=auth).status_code == 200
    assert w.client.get("/api/v1/approvals", headers=auth).status_code == 200

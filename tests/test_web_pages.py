"""The pages without a browser (TestClient, SQLite and PostgreSQL): sessions, CSRF, forms, errors.

Sessions are HttpOnly, SameSite=Lax cookies (Secure over https) over the API's token
machinery; every POST form carries a per-session CSRF token and a missing or wrong one is a
403 page with nothing written; `next` only leads to local paths; bad input re-renders the form
with the message next to the field; a rule that blocks a change shows every reason and writes
nothing; objects out of reach are the 404 page.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from states import inbox, runs
from states.catalog import get_template
from states.demo import sample_evidence
from states.models import ApiToken, Evidence, InboxItem, LoginFailure, Request, Run
from states.timeutil import end_of_local_day, local_date, utcnow
from tests.api_world import MEETING, World
from tests.browser import PASSWORD, csrf_of, web_user
from tests.test_api_matrix import snapshot

MEETING_FORM = {
    "kind": "meeting",
    "title": "动员大会",
    "date": "2026-11-20",
    "expected": "3",
    "present": "3",
}


def anonymous(w: World, base_url: str = "http://testserver") -> TestClient:
    return TestClient(w.client.app, base_url=base_url, raise_server_exceptions=False)


def login_post(client: TestClient, username: str, password: str, **extra: str) -> Any:
    token = csrf_of(client.get("/login").text)
    data = {"csrf_token": token, "username": username, "password": password, **extra}
    return client.post("/login", data=data, follow_redirects=False)


def count(w: World, model: Any) -> int:
    with Session(w.engine) as s:
        return len(s.execute(select(model)).all())


def field_error(html: str) -> list[str]:
    return re.findall(r'class="field-error"[^>]*>([^<]+)<', html)


# --------------------------------------------------------------------------- sessions


def test_the_session_cookie_is_httponly_samesite_and_secure_on_https(world: World) -> None:
    resp = login_post(anonymous(world), "sec_s1", PASSWORD)
    assert resp.status_code == 303 and resp.headers["location"] == "/"
    cookie = next(c for c in resp.headers.get_list("set-cookie") if c.startswith("dj_session="))
    flags = [p.strip().lower() for p in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags and "path=/" in flags
    assert "secure" not in flags
    secure = login_post(anonymous(world, "https://testserver"), "sec_s1", PASSWORD)
    cookie = next(c for c in secure.headers.get_list("set-cookie") if c.startswith("dj_session="))
    assert "secure" in [p.strip().lower() for p in cookie.split(";")]
    # Only the digest is stored, under the label "web".
    token = cookie.split(";")[0].split("=", 1)[1]
    with Session(world.engine) as s:
        labels = s.execute(select(ApiToken.label, ApiToken.token_hash)).all()
    assert ("web" in {lbl for lbl, _ in labels}) and token not in {h for _, h in labels}


def test_pages_need_a_session_and_log_out_ends_it(world: World) -> None:
    anon = anonymous(world)
    run_id = world.runs["S1"]
    resp = anon.get(f"/runs/{run_id}?tab=1", follow_redirects=False)
    assert resp.status_code == 303
    assert resp.headers["location"] == f"/login?next=/runs/{run_id}%3Ftab%3D1"
    assert anon.get("/", follow_redirects=False).headers["location"] == "/login"
    # After log-in the form sends her where she was going.
    resp = login_post(anon, "sec_s1", PASSWORD, next=f"/runs/{run_id}")
    assert resp.headers["location"] == f"/runs/{run_id}"
    page = anon.get("/")
    assert page.status_code == 200 and "sec_s1" in page.text
    # Log-out revokes the token: the old cookie opens nothing any more.
    cookie = anon.cookies.get("dj_session")
    resp = anon.post("/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    again = anonymous(world)
    again.cookies.set("dj_session", cookie or "")
    assert again.get("/", follow_redirects=False).status_code == 303
    assert "您已退出登录" in anon.get("/login").text


def test_wrong_password_and_the_rate_limit_are_explained(world: World) -> None:
    anon = anonymous(world)
    resp = login_post(anon, "sec_s1", "wrong-password")
    assert resp.status_code == 400
    assert "用户名或密码错误" in resp.text
    assert 'value="sec_s1"' in resp.text  # the user name is kept
    assert "dj_session" not in anon.cookies
    assert login_post(anon, "", "").status_code == 422
    for _ in range(4):
        login_post(anon, "sec_s1", "wrong-password")
    resp = login_post(anon, "sec_s1", PASSWORD)  # even the right password waits now
    assert resp.status_code == 429
    assert re.search(r"尝试过多，请 \d+ 分钟后再试", resp.text), resp.text
    assert "dj_session" not in anon.cookies
    assert count(world, LoginFailure) == 5


def test_next_never_leads_off_the_site(world: World) -> None:
    for bad in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/ok\r\nSet-Cookie: x=1",
    ):
        resp = login_post(anonymous(world), "sec_s1", PASSWORD, next=bad)
        assert resp.status_code == 303 and resp.headers["location"] == "/", bad
    page = anonymous(world).get("/login?next=https://evil.example/")
    assert 'name="next" value="/"' in page.text
    resp = login_post(anonymous(world), "sec_s1", PASSWORD, next="/approvals?x=1")
    assert resp.headers["location"] == "/approvals?x=1"


# --------------------------------------------------------------------------- CSRF


def test_a_missing_or_wrong_csrf_token_is_refused_and_writes_nothing(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    other = web_user(w.client.app, "sec_s2")
    run_id = w.runs["S1"]
    before = snapshot(w.engine)
    posts = [
        (f"/runs/{run_id}/evidence", MEETING_FORM),
        (f"/runs/{run_id}/advance", {}),
        (f"/runs/{run_id}/extension", {"new_date": "2027-06-30", "reason": "人员外出"}),
        ("/logout", {}),
    ]
    for url, data in posts:
        for token in (None, "", "0" * 64, other.csrf):  # missing, empty, forged, someone else's
            body = dict(data)
            if token is not None:
                body["csrf_token"] = token
            resp = sec.client.post(url, data=body, follow_redirects=False)
            assert resp.status_code == 403, (url, token, resp.status_code)
            assert "表单已过期或来源不明" in resp.text
    # A JSON body is not a form: refused the same way.
    resp = sec.client.post(f"/runs/{run_id}/advance", json={"csrf_token": sec.csrf})
    assert resp.status_code == 403
    # The log-in form is protected too (log-in CSRF).
    anon = anonymous(w)
    resp = anon.post("/login", data={"username": "sec_s1", "password": PASSWORD})
    assert resp.status_code == 403 and "dj_session" not in anon.cookies
    assert snapshot(w.engine) == before
    # The session is still alive (the forged log-out did nothing) and the right token works.
    assert sec.get("/").status_code == 200
    assert sec.post(f"/runs/{run_id}/evidence", MEETING_FORM).status_code == 303
    assert count(w, Evidence) == 1


# --------------------------------------------------------------------------- forms


def test_bad_evidence_is_shown_by_its_field_with_the_input_kept(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    run_id = w.runs["S1"]
    resp = sec.post(
        f"/runs/{run_id}/evidence",
        {**MEETING_FORM, "title": "", "date": "2026-13-45", "expected": "三", "present": "2"},
    )
    assert resp.status_code == 422
    assert set(field_error(resp.text)) == {"必填", "须为日期（YYYY-MM-DD）", "须为整数"}
    assert 'value="2026-13-45"' in resp.text and 'value="三"' in resp.text
    resp = sec.post(f"/runs/{run_id}/evidence", {**MEETING_FORM, "present": "9"})
    assert resp.status_code == 422 and field_error(resp.text) == ["实到人数不能多于应到人数"]
    resp = sec.post(f"/runs/{run_id}/evidence", {**MEETING_FORM, "title": "长" * 201})
    assert resp.status_code == 422 and field_error(resp.text) == ["最多 200 字"]
    resp = sec.post(f"/runs/{run_id}/evidence", {**MEETING_FORM, "kind": "nonsense"})
    assert resp.status_code == 422 and "请选择要录入的材料类型" in resp.text
    # A kind the stage does not take: the service's rule, shown on the form.
    resp = sec.post(f"/runs/{run_id}/evidence", {"kind": "commitment", "text": "立足岗位做贡献"})
    assert resp.status_code == 422 and "阶段不收 commitment 类材料" in resp.text
    assert count(w, Evidence) == 0
    # A script in a field is text on the page.
    resp = sec.post(f"/runs/{run_id}/evidence", {**MEETING_FORM, "title": "<script>x()</script>"})
    assert resp.status_code == 303 and resp.headers["location"] == f"/runs/{run_id}#evidence"
    page = sec.get(f"/runs/{run_id}").text
    assert "&lt;script&gt;x()&lt;/script&gt;" in page and "<script>x()" not in page
    assert "已录入会议" in page  # the flash message, once
    assert "已录入会议" not in sec.get(f"/runs/{run_id}").text


def test_asking_too_early_lists_every_reason_and_writes_nothing(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    run_id = w.runs["S1"]
    before = snapshot(w.engine)
    resp = sec.post(f"/runs/{run_id}/advance", {"comment": "请审批"})
    assert resp.status_code == 409
    assert "尚不满足进入下一阶段的条件" in resp.text
    assert "<li>宣传发动：尚未记录动员大会</li>" in resp.text
    assert ">请审批</textarea>" in resp.text  # the comment is kept
    assert snapshot(w.engine) == before
    assert sec.post(f"/runs/{run_id}/evidence", MEETING_FORM).status_code == 303
    resp = sec.post(f"/runs/{run_id}/advance", {"comment": "请审批"})
    assert resp.status_code == 303
    page = sec.get(f"/runs/{run_id}").text
    assert "等待「第一医院内科党总支」审批" in page
    # A second request while one is pending: the rule, not a second row.
    resp = sec.post(f"/runs/{run_id}/advance", {})
    assert resp.status_code == 409 and "已有待审批的申请" in resp.text
    assert count(w, Request) == 1


def test_extension_withdraw_and_the_approval_inbox(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    com = web_user(w.client.app, "com_g1")
    run_id = w.runs["S1"]
    for data, message in (
        ({"new_date": "", "reason": "人员外出"}, "请选择新的截止日期"),
        ({"new_date": "2027-02-30", "reason": "人员外出"}, "须为日期（YYYY-MM-DD）"),
        ({"new_date": "2027-06-30", "reason": " "}, "请说明延期理由"),
        ({"new_date": "2020-01-01", "reason": "人员外出"}, "新的截止时间须晚于现在的截止时间"),
    ):
        resp = sec.post(f"/runs/{run_id}/extension", data)
        assert resp.status_code == 422, data
        assert any(message in e for e in field_error(resp.text)), (data, field_error(resp.text))
    assert count(w, Request) == 0
    resp = sec.post(f"/runs/{run_id}/extension", {"new_date": "2027-06-30", "reason": "人员外出"})
    assert resp.status_code == 303
    page = sec.get(f"/runs/{run_id}").text
    assert "延期申请（待审批）" in page and "至 2027-06-30" in page
    # The committee member sees it on the desk and in the inbox, with the reason.
    desk = com.get("/").text
    assert "内科第一党支部" in desk and "延期申请" in desk
    inbox_page = com.get("/approvals").text
    assert "延期理由：</strong>人员外出" in inbox_page
    # Returning needs an opinion: refused on the server too, input kept, nothing written.
    req_id = int(re.findall(r'data-request-id="(\d+)"', inbox_page)[0])
    before = snapshot(w.engine)
    resp = com.post(f"/approvals/{req_id}/return", {"reason": "  "})
    assert resp.status_code == 422 and "退回须填写意见" in field_error(resp.text)
    assert snapshot(w.engine) == before
    # The secretary withdraws it instead; then the committee member has nothing to decide.
    with Session(w.engine) as s:
        pending = s.execute(select(Request.id)).scalar_one()
    confirmed = {"request_id": str(pending), "step": "confirm"}  # through the confirmation page
    assert sec.post(f"/runs/{run_id}/withdraw", confirmed).status_code == 303
    resp = com.post(f"/approvals/{req_id}/approve", {"opinion": "同意"})
    assert resp.status_code == 409 and "已撤回" in resp.text
    resp = sec.post(f"/runs/{run_id}/withdraw", {"request_id": str(pending)})
    assert resp.status_code == 409


def test_return_then_approve_from_the_inbox(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    com = web_user(w.client.app, "com_g1")
    dual = web_user(w.client.app, "dual")
    run_id = w.runs["S1"]
    sec.post(f"/runs/{run_id}/evidence", MEETING_FORM)
    sec.post(f"/runs/{run_id}/advance", {"comment": "请审批"})
    with Session(w.engine) as s:
        req_id = s.execute(select(Request.id)).scalar_one()
    # The secretary of S1 who sits on G1 may not decide her own branch: not in her inbox.
    assert f'data-request-id="{req_id}"' not in dual.get("/approvals").text
    resp = dual.post(f"/approvals/{req_id}/approve", {})
    assert resp.status_code == 403 and "不能审批本支部的申请" in resp.text
    resp = com.post(
        f"/approvals/{req_id}/return", {"reason": "请补充会议记录<b>照片</b>", "step": "confirm"}
    )
    assert resp.status_code == 303 and resp.headers["location"] == "/approvals"
    page = sec.get(f"/runs/{run_id}").text
    assert "请补充会议记录&lt;b&gt;照片&lt;/b&gt;" in page
    assert "请补充会议记录&lt;b&gt;照片&lt;/b&gt;" in sec.get("/").text
    sec.post(f"/runs/{run_id}/advance", {"comment": "已补充"})
    with Session(w.engine) as s:
        second = max(s.execute(select(Request.id)).scalars())
    resp = com.post(
        f"/approvals/{second}/approve",
        {"opinion": "同意", "next": f"/runs/{run_id}", "step": "confirm"},
    )
    assert resp.status_code == 303 and resp.headers["location"] == f"/runs/{run_id}"
    page = com.get(f"/runs/{run_id}").text
    assert '<li class="current" aria-current="step">公开承诺</li>' in page
    assert "已同意「内科第一党支部」的申请" in page


def test_a_return_may_send_the_run_back_to_an_earlier_stage(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    com = web_user(w.client.app, "com_g1")
    run_id = w.runs["S1"]
    sec.post(f"/runs/{run_id}/evidence", MEETING_FORM)
    sec.post(f"/runs/{run_id}/advance", {})
    with Session(w.engine) as s:
        first = s.execute(select(Request.id)).scalar_one()
    com.post(f"/approvals/{first}/approve", {"step": "confirm"})
    tpl = get_template("chuangxian_zhengyou")
    with Session(w.engine) as s:  # the pledge stage's evidence, recorded directly
        for kind, data in sample_evidence(tpl, tpl.stage("pledge"), 3):
            runs.record_evidence(s, run_id=run_id, actor=w.actors["sec_s1"], kind=kind, data=data)
        s.commit()
    sec.post(f"/runs/{run_id}/advance", {})
    with Session(w.engine) as s:
        second = max(s.execute(select(Request.id)).scalars())
    inbox_page = com.get("/approvals").text
    assert '<option value="mobilize">退回到「宣传发动」</option>' in inbox_page
    before = snapshot(w.engine)
    bad = com.post(f"/approvals/{second}/return", {"reason": "重做", "to_stage": "commend"})
    assert bad.status_code == 422 and "只能退回到此前的阶段" in bad.text
    assert snapshot(w.engine) == before
    resp = com.post(
        f"/approvals/{second}/return",
        {"reason": "动员大会记录不全", "to_stage": "mobilize", "step": "confirm"},
    )
    assert resp.status_code == 303
    with Session(w.engine) as s:
        run = s.get_one(Run, run_id)
        assert run.stage == "mobilize" and run.pending_request_id is None
    assert "进度已退回到「宣传发动」" in com.get("/approvals").text


def test_the_desk_shows_runs_deadlines_and_unread_notices(world: World) -> None:
    w = world
    with Session(w.engine, expire_on_commit=False) as s:
        inbox.post(s, user_ids=[w.actors["sec_s1"].user_id], kind="reminder", title="截止提醒<i>")
        inbox.post(s, user_ids=[w.actors["sec_s2"].user_id], kind="reminder", title="别人的消息")
        s.commit()
        mine, theirs = (
            s.execute(select(InboxItem.id).order_by(InboxItem.id)).scalars().all()  # type: ignore[arg-type]
        )
    sec = web_user(w.client.app, "sec_s1")
    desk = sec.get("/").text
    assert "内科第一党支部" in desk and "尚未记录动员大会" in desk
    assert "宣传发动：尚未记录" not in desk  # the stage is not repeated before each item
    assert re.search(r'badge badge-green"[^>]*>剩 \d+ 天<', desk)
    assert "截止提醒&lt;i&gt;" in desk and "别人的消息" not in desk
    # Someone else's notice looks missing; mine gets marked read and leaves the desk.
    assert sec.post(f"/notices/{theirs}/read").status_code == 404
    resp = sec.post(f"/notices/{mine}/read")
    assert resp.status_code == 303 and resp.headers["location"] == "/#notices"
    assert "截止提醒" not in sec.get("/").text
    with Session(w.engine) as s:
        unread = {i.id: i.read_at for i in s.execute(select(InboxItem)).scalars()}
    assert unread[mine] is not None and unread[theirs] is None


def test_deadline_badges_turn_amber_and_red(world: World) -> None:
    w = world
    sec = web_user(w.client.app, "sec_s1")
    now = utcnow()

    def badge(deadline: datetime) -> str:
        with Session(w.engine) as s:
            run = s.get(Run, w.runs["S1"])
            assert run is not None
            run.deadline = deadline
            s.add(run)
            s.commit()
        found = re.search(r'class="badge badge-(\w+)"[^>]*>([^<]+)<', sec.get("/").text)
        assert found
        return f"{found.group(1)} {found.group(2)}"

    assert badge(now - timedelta(days=3)) == "red 已逾期 3 天"
    assert badge(end_of_local_day(local_date(now))) == "red 今天截止"
    # One day left is at most one working day: amber, whatever the weekday.
    assert badge(now + timedelta(days=1)).startswith("amber 剩 1 天（")
    assert badge(now + timedelta(days=60)) == "green 剩 60 天"


# --------------------------------------------------------------------------- errors and nav


def test_error_pages_are_html_and_the_api_keeps_json(world: World) -> None:
    sec = web_user(world.client.app, "sec_s1")
    for url in ("/runs/abc", "/runs/0", "/runs/99999999999", "/runs/999999", "/no-such-page"):
        resp = sec.get(url)
        assert resp.status_code == 404, url
        assert resp.headers["content-type"].startswith("text/html")
        assert "页面不存在" in resp.text
    resp = sec.client.get("/api/v1/no-such-thing")
    assert resp.status_code == 404 and resp.json()["code"] == "not_found"
    resp = sec.client.put("/login")
    assert resp.status_code == 405 and "text/html" in resp.headers["content-type"]
    assert world.client.get("/healthz").json() == {"status": "ok"}


def test_the_top_bar_follows_the_roles(world: World) -> None:
    def nav(username: str) -> list[str]:
        html = web_user(world.client.app, username).get("/").text
        bar = html.split('<nav class="nav"', 1)[1].split("</nav>", 1)[0]
        return re.findall(r">([^<>\s]+)</a>", bar)

    assert nav("sec_s1") == ["工作台", "消息"]
    assert nav("com_g1") == ["工作台", "审批", "活动", "消息"]
    assert nav("admin_b") == ["工作台", "审批", "活动", "组织", "消息"]
    assert nav("org_b") == ["工作台", "活动", "组织", "消息"]


def test_a_superior_sees_the_run_but_records_a_review_only_in_its_stage(world: World) -> None:
    w = world
    with Session(w.engine, expire_on_commit=False) as s:
        runs.record_evidence(
            s, run_id=w.runs["S1"], actor=w.actors["sec_s1"], kind="meeting", data=MEETING
        )
        s.commit()
    com = web_user(w.client.app, "com_h1")
    page = com.get(f"/runs/{w.runs['S1']}").text
    assert "动员大会" in page
    assert 'id="form-review"' not in page  # the review form belongs to the review stage
    resp = com.post(
        f"/runs/{w.runs['S1']}/evidence",
        {"kind": "review", "achievements": "好", "problems": "少", "direction": "多"},
    )
    assert resp.status_code == 422 and "阶段不收 review 类材料" in resp.text

"""Pages of committees and organisers: campaign dashboard, launch, organisation tree.

Server-side with TestClient on SQLite and PostgreSQL (the `world` of tests/api_world.py); the
browser half is at the end and uses the fixtures of tests/browser.py.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from fastapi.testclient import TestClient
from sqlalchemy import func, update
from sqlmodel import Session, col, select

from states.campaigns import campaign_status, count_participants
from states.catalog import DONE
from states.models import AuditEvent, Campaign, Grant, Organisation, Run, User
from states.queries import campaign_scope
from states.timeutil import end_of_local_day, local_date, utcnow
from states.tokens import issue_token
from states.users import hash_password, load_actor
from tests.api_world import World
from tests.browser import PHONE, LiveWorld, login, shot
from workflows import jobs

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
STAGE_COUNT = re.compile(r'data-stage-count="([a-z_]+)"[^>]*>(\d+)<')


# --------------------------------------------------------------------------- helpers


def browser_of(w: World, username: str) -> TestClient:
    """A client with `username`'s session cookie (the token the world issued)."""
    token = w.tokens[username]["Authorization"].split()[1]
    client = TestClient(w.client.app, raise_server_exceptions=False, follow_redirects=False)
    client.cookies.set("dj_session", token)
    return client


def csrf_of(client: TestClient, url: str = "/campaigns") -> str:
    page = client.get(url)
    match = CSRF.search(page.text)
    assert match, page.text[:500]
    return match.group(1)


def stage_counts(html: str) -> dict[str, int]:
    return {stage: int(n) for stage, n in STAGE_COUNT.findall(html)}


def snapshot(w: World) -> dict[str, int]:
    """Row counts of everything the pages may write."""
    with Session(w.engine) as s:
        return {
            model.__name__: int(s.exec(select(func.count()).select_from(model)).one())
            for model in (Organisation, User, Grant, Campaign, Run, AuditEvent)
        }


def move_runs(w: World, **stages: str) -> None:
    """Put runs (by org code) into stages; DONE completes them."""
    with Session(w.engine) as s:
        for code, stage in stages.items():
            values: dict[str, Any] = {"stage": stage}
            if stage == DONE:
                values |= {"completed_at": utcnow(), "deadline": None}
            s.execute(update(Run).where(col(Run.id) == w.runs[code]).values(**values))
        s.commit()


def launch_fields(tpl_stages: list[str], **extra: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"template": "chuangxian_zhengyou", "kinds": ["党支部"]}
    for sid in tpl_stages:
        fields[f"mode_{sid}"] = "working_days"
        fields[f"days_{sid}"] = "10"
        fields[f"date_{sid}"] = ""
    fields.update(extra)
    return fields


CXZY = ["mobilize", "pledge", "strive", "review", "appraise", "commend"]


# --------------------------------------------------------------------------- dashboard


def test_log_in_through_the_form_reaches_the_dashboard(world: World) -> None:
    client = TestClient(world.client.app, raise_server_exceptions=False, follow_redirects=False)
    with Session(world.engine) as s:
        s.execute(
            update(User)
            .where(col(User.username) == "com_h1")
            .values(password_hash=hash_password("口令-h1-2026"))
        )
        s.commit()
    assert client.get(f"/campaigns/{world.campaign_id}").status_code == 303
    token = csrf_of(client, "/login")
    r = client.post(
        "/login",
        data={
            "username": "com_h1",
            "password": "口令-h1-2026",
            "csrf_token": token,
            "next": f"/campaigns/{world.campaign_id}",
        },
    )
    assert r.status_code == 303 and r.headers["location"] == f"/campaigns/{world.campaign_id}"
    page = client.get(r.headers["location"])
    assert page.status_code == 200
    assert sum(stage_counts(page.text).values()) == 3  # S1, S2, S3 under H1


def test_dashboard_counts_equal_the_campaign_status_for_each_scope(world: World) -> None:
    move_runs(world, S1="pledge", S3=DONE, S4="strive")
    with Session(world.engine) as s:
        campaign = s.get(Campaign, world.campaign_id)
        root = s.get(Organisation, campaign.root_org_id) if campaign else None
        assert campaign and root
        expected = {}
        for name in ("com_h1", "org_b", "com_g1"):
            scope = campaign_scope(load_actor(s, world.actors[name].user_id), root)
            status = campaign_status(s, campaign, scope=None if scope == [root.path] else scope)
            expected[name] = {st.stage: st.runs for st in status.stages}
    for name, counts in expected.items():
        page = browser_of(world, name).get(f"/campaigns/{world.campaign_id}")
        assert page.status_code == 200, name
        assert stage_counts(page.text) == counts, name
        api = world.get(name, f"/api/v1/campaigns/{world.campaign_id}").json()
        assert {st["stage"]: st["runs"] for st in api["stages"]} == counts, name
    # A committee sees its own subtree, the organiser of the root sees everything.
    assert expected["com_h1"] == {**dict.fromkeys(CXZY, 0), "mobilize": 1, "pledge": 1, DONE: 1}
    assert expected["org_b"]["strive"] == 1 and sum(expected["org_b"].values()) == 4
    assert sum(expected["com_g1"].values()) == 2
    # Share done, and the diagram carries the same numbers.
    page = browser_of(world, "com_h1").get(f"/campaigns/{world.campaign_id}")
    assert "33.3%" in page.text
    assert 'data-stage="pledge"' in page.text and "1 个单位" in page.text


def test_dashboard_shows_the_committees_latest_bulletin(world: World) -> None:
    url = f"/campaigns/{world.campaign_id}"
    assert 'id="bulletin"' not in browser_of(world, "com_h1").get(url).text
    with Session(world.engine) as s:
        s.execute(
            update(Run)
            .where(col(Run.id) == world.runs["S3"])
            .values(escalation_level=2, deadline=utcnow() - timedelta(days=9))
        )
        s.commit()
    assert jobs.weekly_bulletin(world.engine, utcnow()).total == 4  # B, H1, G1 and H2
    h1 = browser_of(world, "com_h1").get(url).text
    assert 'id="bulletin"' in h1
    assert "共 3 个单位" in h1 and "逾期 1 个" in h1  # H1's subtree: S1, S2, S3
    assert "通报名单</strong>（二级及以上督办）：第一医院机关党支部" in h1
    g1 = browser_of(world, "com_g1").get(url).text
    assert "共 2 个单位" in g1 and "本期没有需要通报的单位" in g1


def test_campaign_list_shows_what_i_see(world: World) -> None:
    page = browser_of(world, "com_h1").get("/campaigns")
    assert page.status_code == 200
    assert f'href="/campaigns/{world.campaign_id}"' in page.text
    assert "我可见的单位：3 个" in page.text
    assert "发起新活动" not in page.text  # a committee member does not launch
    assert "发起新活动" in browser_of(world, "org_b").get("/campaigns").text
    assert (
        f"/campaigns/{world.campaign_id}" not in browser_of(world, "sec_s1").get("/campaigns").text
    )


def test_drill_down_from_a_committee_to_its_branches(world: World) -> None:
    client = browser_of(world, "org_b")
    cid = world.campaign_id
    top = client.get(f"/campaigns/{cid}").text
    h1, h2, g1 = (world.orgs[c].id for c in ("H1", "H2", "G1"))
    assert f"/campaigns/{cid}?org={h1}" in top and f"/campaigns/{cid}?org={h2}" in top
    page = client.get(f"/campaigns/{cid}?org={g1}")
    assert page.status_code == 200
    assert stage_counts(page.text) == {**dict.fromkeys(CXZY, 0), "mobilize": 2, DONE: 0}
    for code in ("S1", "S2"):
        assert f'href="/runs/{world.runs[code]}"' in page.text
    assert world.orgs["S4"].name not in page.text
    # A committee below the root starts at its own organisation and cannot drill out of it.
    com = browser_of(world, "com_g1")
    own = com.get(f"/campaigns/{cid}")
    assert stage_counts(own.text)["mobilize"] == 2
    assert com.get(f"/campaigns/{cid}?org={h1}").status_code == 404
    assert com.get(f"/campaigns/{cid}?org={world.orgs['S4'].id}").status_code == 404
    assert com.get(f"/campaigns/{cid}?org=999999").status_code == 404


def test_overdue_list_shows_a_run_past_its_deadline(world: World) -> None:
    past = end_of_local_day(local_date(utcnow()) - timedelta(days=3))
    with Session(world.engine) as s:
        for code, level in (("S2", 2), ("S4", 1)):
            s.execute(
                update(Run)
                .where(col(Run.id) == world.runs[code])
                .values(deadline=past, escalation_level=level)
            )
        s.commit()
    page = browser_of(world, "com_g1").get(f"/campaigns/{world.campaign_id}").text
    overdue = page[page.index('id="cm-overdue-h"') :]
    assert world.orgs["S2"].name in overdue
    assert "3 天" in overdue and "二级督办" in overdue and "宣传发动" in overdue
    assert f'href="/runs/{world.runs["S2"]}"' in overdue
    assert world.orgs["S1"].name not in overdue
    assert world.orgs["S4"].name not in page  # H2 is outside the committee's subtree
    everything = browser_of(world, "org_b").get(f"/campaigns/{world.campaign_id}").text
    overdue = everything[everything.index('id="cm-overdue-h"') :]
    assert world.orgs["S2"].name in overdue and world.orgs["S4"].name in overdue


# --------------------------------------------------------------------------- launch


def test_launch_preview_number_equals_the_runs_created(world: World) -> None:
    client = browser_of(world, "org_h1")
    h1 = world.orgs["H1"]
    form = client.get(f"/campaigns/new?template=sqsy_fuwuxing&root={h1.id}")
    assert form.status_code == 200
    year = local_date(utcnow()).year
    assert f'value="{year}-12-25"' in form.text  # the template's dated self-check, pre-filled
    assert 'type="date"' in form.text
    token = CSRF.search(form.text).group(1)  # type: ignore[union-attr]
    fields = dict(re.findall(r'name="((?:mode|date|days)_[a-z_]+)"[^>]*value="([^"]*)"', form.text))
    fields |= {m: "date" for m in fields if m.startswith("mode_")}
    data = {
        **fields,
        "template": "sqsy_fuwuxing",
        "root": str(h1.id),
        "kinds": ["党支部"],
        "name": "四强四有创建（测试）",
        "csrf_token": token,
    }
    before = snapshot(world)
    preview = client.post("/campaigns/new/preview", data=data)
    assert preview.status_code == 200, preview.text
    shown = int(re.search(r'data-preview-runs="(\d+)"', preview.text).group(1))  # type: ignore[union-attr]
    with Session(world.engine) as s:
        assert shown == count_participants(s, h1, ["党支部"]) == 3
    assert snapshot(world) == before  # a preview writes nothing
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', preview.text))
    confirm = {**hidden, "kinds": ["党支部"], "allow_past": "1", "action": "confirm"}
    r = client.post("/campaigns/new", data=confirm)
    assert r.status_code == 303
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    with Session(world.engine) as s:
        campaign = s.get(Campaign, cid)
        assert campaign is not None and campaign.run_count == shown
        assert campaign.name == "四强四有创建（测试）" and campaign.root_org_id == h1.id
        runs = s.exec(select(func.count()).select_from(Run).where(Run.campaign_id == cid)).one()
        assert runs == shown
        assert all("date" in spec for spec in campaign.schedule.values())
    dashboard = client.get(r.headers["location"])
    assert (
        dashboard.status_code == 200 and "活动已发起：创建了 3 个支部的创建进度" in dashboard.text
    )
    # Confirming the same preview again (a double click) launches nothing more.
    again = client.post("/campaigns/new", data=confirm)
    assert again.status_code == 303 and again.headers["location"] == f"/campaigns/{cid}"
    with Session(world.engine) as s:
        assert s.exec(select(func.count()).select_from(Campaign)).one() == 2


def test_launch_form_errors_are_shown_next_to_the_field(world: World) -> None:
    client = browser_of(world, "org_b")
    token = csrf_of(client, "/campaigns/new")
    before = snapshot(world)
    data = launch_fields(CXZY, root=str(world.orgs["B"].id), csrf_token=token)
    data |= {"mode_pledge": "date", "date_pledge": "", "days_strive": "0", "kinds": []}
    r = client.post("/campaigns/new/preview", data=data)
    assert r.status_code == 422
    assert "请选择截止日期" in r.text and "天数须为 1 至 366 之间的整数" in r.text
    assert "请至少选择一种参与组织类型" in r.text
    assert re.search(r'id="stage-pledge"[^>]*>[\s\S]*?请选择截止日期', r.text)
    # Kinds with no organisation: the form says so, nothing is launched.
    data = launch_fields(CXZY, root=str(world.orgs["B"].id), csrf_token=token, kinds=["党小组"])
    r = client.post("/campaigns/new/preview", data=data)
    assert r.status_code == 422 and "没有类型为 党小组 的组织" in r.text
    r = client.post("/campaigns/new", data={**data, "action": "confirm", "once": "k1"})
    assert r.status_code == 422
    assert snapshot(world) == before
    # A committee member may not launch at all.
    com = browser_of(world, "com_h1")
    assert com.get("/campaigns/new").status_code == 403


# --------------------------------------------------------------------------- organisations


def _upload(client: TestClient, name: str, text: str, token: str) -> Any:
    return client.post(
        "/orgs/import",
        data={"csrf_token": token},
        files={"file": (name, text.encode("utf-8"), "text/csv")},
    )


def test_import_with_a_bad_row_shows_it_and_writes_nothing(world: World) -> None:
    client = browser_of(world, "org_h1")
    token = csrf_of(client, "/orgs/import")
    before = snapshot(world)
    bad = (
        "编码,名称,类型,上级编码,党员人数\n"
        "H1-S9,第一医院新党支部,党支部,H1,5\n"
        "H1-S10,第一医院另一党支部,支部委员会,H1,3\n"
        "H2-S9,第二医院新党支部,党支部,H2,2\n"
    )
    r = _upload(client, "组织.csv", bad, token)
    assert r.status_code == 422
    table = r.text[r.text.index('id="import-errors"') :]
    assert "第 3 行" in table and "类型" in table and "类型无效：支部委员会" in table
    assert "第 4 行" in table and "不在您的管辖范围内" in table
    assert "第 2 行" not in table
    assert snapshot(world) == before
    good = "编码,名称,类型,上级编码,党员人数\nH1-S9,第一医院新党支部,党支部,H1,5\n"
    r = _upload(client, "组织.csv", good, token)
    assert r.status_code == 303 and r.headers["location"] == "/orgs"
    assert "导入完成：新建 1 个" in client.get("/orgs").text
    with Session(world.engine) as s:
        org = s.exec(select(Organisation).where(Organisation.code == "H1-S9")).one()
        assert org.parent_id == world.orgs["H1"].id and org.member_count == 5
    assert snapshot(world)["Organisation"] == before["Organisation"] + 1
    # Not a spreadsheet: the message is shown beside the file field.
    r = _upload(client, "组织.txt", good, token)
    assert r.status_code == 422 and "不支持的文件类型" in r.text


def test_org_tree_pages_browse_within_reach(world: World) -> None:
    client = browser_of(world, "org_h1")
    home = client.get("/orgs")
    assert home.status_code == 200 and f'href="/orgs/{world.orgs["H1"].id}"' in home.text
    g1 = client.get(f"/orgs/{world.orgs['G1'].id}")
    assert g1.status_code == 200
    assert world.orgs["S1"].name in g1.text and world.orgs["S2"].name in g1.text
    assert f'href="/orgs/{world.orgs["H1"].id}"' in g1.text  # breadcrumb up to the reach
    assert f'href="/orgs/{world.orgs["B"].id}"' not in g1.text  # but not beyond it


def _me(w: World, username: str) -> set[tuple[str, str]]:
    with Session(w.engine) as s:
        user = s.exec(select(User).where(User.username == username)).one()
        token = issue_token(s, user.id or 0).token
        s.commit()
    body = w.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
    return {(g["org"]["code"], g["role"]) for g in body["grants"]}


def test_grant_and_revoke_show_in_the_users_me(world: World) -> None:
    client = browser_of(world, "admin_b")
    g1 = world.orgs["G1"]
    token = csrf_of(client, f"/orgs/{g1.id}")
    r = client.post(
        f"/orgs/{g1.id}/grants",
        data={"username": "sec_s1", "role": "supervisor", "csrf_token": token},
    )
    assert r.status_code == 303
    assert ("G1", "supervisor") in _me(world, "sec_s1")
    page = client.get(f"/orgs/{g1.id}").text
    grant_id = re.search(
        rf'action="/orgs/{g1.id}/grants/(\d+)/revoke"',
        page[page.index('<td data-label="用户">sec_s1</td>') :],
    ).group(1)  # type: ignore[union-attr]
    r = client.post(f"/orgs/{g1.id}/grants/{grant_id}/revoke", data={"csrf_token": token})
    assert r.status_code == 303
    assert ("G1", "supervisor") not in _me(world, "sec_s1")
    assert ("S1", "secretary") in _me(world, "sec_s1")
    # A new user, with a role on the branch, in one step.
    s3 = world.orgs["S3"]
    r = client.post(
        f"/orgs/{s3.id}/users",
        data={
            "username": "sec_s3",
            "display_name": "支部书记丙",
            "password": "口令-s3-2026",
            "role": "secretary",
            "csrf_token": token,
        },
    )
    assert r.status_code == 303
    assert _me(world, "sec_s3") == {("S3", "secretary")}
    with Session(world.engine) as s:
        actions = list(s.exec(select(AuditEvent.action).where(AuditEvent.stream == "user")))
    assert actions.count("grant.added") == 2 and "grant.revoked" in actions
    assert "user.created" in actions


def test_bad_user_and_grant_input_is_shown_on_the_form(world: World) -> None:
    client = browser_of(world, "org_h1")
    s1 = world.orgs["S1"]
    token = csrf_of(client, f"/orgs/{s1.id}")
    before = snapshot(world)
    cases = [
        ("/grants", {"username": "nobody", "role": "committee"}, "用户不存在：nobody"),
        ("/grants", {"username": "sec_s2", "role": "admin"}, "您不能授予“管理员”角色"),
        (
            "/users",
            {"username": "sec_s1", "password": "口令-2026-xx", "role": "secretary"},
            "用户名已存在：sec_s1",
        ),
        (
            "/users",
            {"username": "new_one", "password": "short", "role": "secretary"},
            "密码至少 8 位",
        ),
    ]
    for suffix, data, message in cases:
        r = client.post(f"/orgs/{s1.id}{suffix}", data={**data, "csrf_token": token})
        assert r.status_code == 422, (suffix, data)
        assert message in r.text
        assert 'class="field-error"' in r.text
    assert snapshot(world) == before
    # An organiser cannot revoke an admin's grant, nor her own.
    with Session(world.engine) as s:
        own = s.exec(select(Grant.id).where(Grant.user_id == world.actors["org_h1"].user_id)).one()
    h1 = world.orgs["H1"]
    assert (
        client.post(f"/orgs/{h1.id}/grants/{own}/revoke", data={"csrf_token": token}).status_code
        == 403
    )
    assert snapshot(world) == before


# --------------------------------------------------------------------------- reach and CSRF


def test_pages_out_of_reach_are_404_and_write_nothing(world: World) -> None:
    with Session(world.engine) as s:
        com_h1_grant = s.exec(
            select(Grant.id).where(Grant.user_id == world.actors["com_h1"].user_id)
        ).one()
    owner = browser_of(world, "org_h1")
    token = csrf_of(owner, "/campaigns/new")
    preview = owner.post(
        "/campaigns/new/preview",
        data=launch_fields(CXZY, root=str(world.orgs["H1"].id), csrf_token=token),
    )
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', preview.text))
    r = owner.post("/campaigns/new", data={**hidden, "kinds": ["党支部"], "action": "confirm"})
    h1_campaign = int(r.headers["location"].rsplit("/", 1)[1])

    client = browser_of(world, "admin_h2")
    token = csrf_of(client, "/orgs")
    h1, s1, g1 = (world.orgs[c].id for c in ("H1", "S1", "G1"))
    cid = world.campaign_id
    for url in (
        f"/orgs/{h1}",
        f"/orgs/{s1}",
        f"/campaigns/{h1_campaign}",
        f"/campaigns/{cid}?org={h1}",
        f"/campaigns/{cid}?org={g1}",
        f"/campaigns/new?root={h1}",
        "/orgs/999999",
        "/campaigns/999999",
    ):
        r = client.get(url)
        assert r.status_code == 404, url
        assert "页面不存在" in r.text
    before = snapshot(world)
    launch = launch_fields(CXZY, root=str(h1), csrf_token=token)
    for url, data in (
        (f"/orgs/{h1}/grants", {"username": "sec_s4", "role": "committee"}),
        (
            f"/orgs/{s1}/users",
            {"username": "x_new", "password": "口令-2026-xx", "role": "secretary"},
        ),
        (f"/orgs/{h1}/grants/{com_h1_grant}/revoke", {}),
        (f"/orgs/{world.orgs['H2'].id}/grants/{com_h1_grant}/revoke", {}),
        ("/campaigns/new/preview", launch),
        ("/campaigns/new", {**launch, "action": "confirm", "once": "x"}),
    ):
        r = client.post(url, data={**data, "csrf_token": token})
        assert r.status_code == 404, url
    assert snapshot(world) == before
    # Their own part of the campaign is theirs to see.
    assert client.get(f"/campaigns/{cid}").status_code == 200


def test_forms_without_csrf_are_refused_and_write_nothing(world: World) -> None:
    client = browser_of(world, "admin_b")
    s3 = world.orgs["S3"].id
    with Session(world.engine) as s:
        grant = s.exec(
            select(Grant.id).where(Grant.user_id == world.actors["sec_s1"].user_id)
        ).one()
    before = snapshot(world)
    launch = launch_fields(CXZY, root=str(world.orgs["B"].id))
    for url, data, files in (
        (f"/orgs/{s3}/grants", {"username": "sec_s1", "role": "committee"}, None),
        (
            f"/orgs/{s3}/users",
            {"username": "y_new", "password": "口令-2026-yy", "role": "secretary"},
            None,
        ),
        (f"/orgs/{world.orgs['S1'].id}/grants/{grant}/revoke", {}, None),
        ("/campaigns/new/preview", launch, None),
        ("/campaigns/new", {**launch, "action": "confirm", "once": "y"}, None),
        (
            "/orgs/import",
            {},
            {"file": ("a.csv", "code,name,kind,parent_code\nX1,x,党支部,B\n".encode(), "text/csv")},
        ),
    ):
        for token in (None, "forged"):
            body = dict(data) if token is None else {**data, "csrf_token": token}
            r = client.post(url, data=body, files=files)
            assert r.status_code == 403, (url, token)
    assert snapshot(world) == before


# --------------------------------------------------------------------------- in a browser


def _phone(chromium: Browser) -> BrowserContext:
    return chromium.new_context(
        viewport=PHONE,
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
    )


def _no_horizontal_scroll(p: Page) -> None:
    width = p.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], (p.url, width)


def test_browser_dashboard_on_desktop_and_phone(
    browser: Browser,
    live_world: LiveWorld,
) -> None:
    live = live_world
    cid = live.world.campaign_id
    desk = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    phone = _phone(browser)
    try:
        move_runs(live.world, S1="pledge", S3=DONE)
        past = end_of_local_day(local_date(utcnow()) - timedelta(days=2))
        with Session(live.world.engine) as s:
            s.execute(
                update(Run)
                .where(col(Run.id) == live.world.runs["S2"])
                .values(deadline=past, escalation_level=1)
            )
            s.commit()
        d, m = desk.new_page(), phone.new_page()
        login(d, live.base_url, "org_b")
        d.goto(live.url(f"/campaigns/{cid}"))
        counts = {
            str(el.get_attribute("data-stage-count")): int(el.text_content() or "0")
            for el in d.locator("[data-stage-count]").all()
        }
        assert counts == {**dict.fromkeys(CXZY, 0), "mobilize": 2, "pledge": 1, DONE: 1}
        overdue = d.locator(".cm-overdue tbody tr")
        assert overdue.count() == 1 and "内科第二党支部" in (overdue.text_content() or "")
        assert "25.0%" in (d.locator(".cm-ring").text_content() or "")
        assert d.locator(".cm-child").count() == 2  # H1 and H2
        shot(d, "committee-dashboard-desktop")
        d.click(f"a[href='/campaigns/{cid}?org={live.world.orgs['H1'].id}']")
        d.wait_for_url(f"**/campaigns/{cid}?org=*")
        assert d.locator(".cm-child").count() == 2  # G1 and S3
        shot(d, "committee-dashboard-drill-desktop")
        d.goto(live.url("/campaigns"))
        shot(d, "committee-campaigns-desktop")

        login(m, live.base_url, "com_h1")
        for path, name in (
            (f"/campaigns/{cid}", "committee-dashboard-phone"),
            (f"/campaigns/{cid}?org={live.world.orgs['G1'].id}", "committee-drill-phone"),
            ("/campaigns", "committee-campaigns-phone"),
        ):
            m.goto(live.url(path))
            assert m.locator("h1").count() == 1
            _no_horizontal_scroll(m)
            shot(m, name)
    finally:
        desk.close()
        phone.close()


def test_browser_launch_through_preview_to_confirm(
    browser: Browser,
    live_world: LiveWorld,
) -> None:
    live = live_world
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    phone = _phone(browser)
    try:
        p = context.new_page()
        login(p, live.base_url, "org_h1")
        p.goto(live.url("/campaigns/new"))
        p.select_option("#root", str(live.world.orgs["H1"].id))
        p.fill("#name", "创先争优（浏览器测试）")
        p.select_option("#mode_pledge", "date")
        p.fill("#date_pledge", "")
        shot(p, "committee-launch-form")
        p.click("text=下一步：预览")
        assert p.locator("#stage-pledge .field-error").text_content() == "请选择截止日期"
        shot(p, "committee-launch-form-error")
        p.select_option("#mode_pledge", "working_days")
        p.click("text=下一步：预览")
        runs = int(p.locator("#preview-runs").text_content() or "0")
        assert runs == 3
        shot(p, "committee-launch-preview")
        p.click("button[value=confirm]")
        p.wait_for_url("**/campaigns/*")
        assert p.locator(".flash-success").text_content() == "活动已发起：创建了 3 个支部的创建进度"
        counts = [int(el.text_content() or "0") for el in p.locator("[data-stage-count]").all()]
        assert sum(counts) == runs
        assert p.locator("h1").text_content() == "创先争优（浏览器测试）"
        shot(p, "committee-launch-done")

        m = phone.new_page()
        login(m, live.base_url, "org_h1")
        m.goto(live.url("/campaigns/new?template=sqsy_fuwuxing"))
        _no_horizontal_scroll(m)
        shot(m, "committee-launch-phone")
    finally:
        context.close()
        phone.close()


def test_browser_import_with_an_error_and_org_pages(
    browser: Browser,
    live_world: LiveWorld,
) -> None:
    live = live_world
    bad = (
        "编码,名称,类型,上级编码,党员人数\n"
        "H2-S8,第二医院新党支部,党支部,H2,4\n"
        "H2-S9,第二医院另一党支部,党支部,H2,四十\n"
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800}, locale="zh-CN")
    phone = _phone(browser)
    try:
        p = context.new_page()
        login(p, live.base_url, "admin_b")
        p.goto(live.url("/orgs/import"))
        p.set_input_files(
            "#file", {"name": "组织.csv", "mimeType": "text/csv", "buffer": bad.encode("utf-8")}
        )
        p.click("text=上传并导入")
        rows = p.locator("#import-errors tbody tr")
        assert rows.count() == 1
        assert "第 3 行" in (rows.first.text_content() or "")
        assert "党员人数必须是非负整数：四十" in (rows.first.text_content() or "")
        shot(p, "committee-import-error")
        p.goto(live.url(f"/orgs/{live.world.orgs['H2'].id}"))
        assert p.locator("text=第二医院新党支部").count() == 0  # nothing was written
        shot(p, "committee-org-desktop")

        m = phone.new_page()
        login(m, live.base_url, "admin_b")
        m.goto(live.url("/orgs/import"))
        m.set_input_files(
            "#file", {"name": "组织.csv", "mimeType": "text/csv", "buffer": bad.encode("utf-8")}
        )
        m.click("text=上传并导入")
        assert m.locator("#import-errors tbody tr").count() == 1
        _no_horizontal_scroll(m)
        shot(m, "committee-import-error-phone")
        m.goto(live.url(f"/orgs/{live.world.orgs['G1'].id}"))
        m.click("text=添加新用户并授予本组织的角色")
        _no_horizontal_scroll(m)
        shot(m, "committee-org-phone")
    finally:
        context.close()
        phone.close()

"""The roster (党员名册): import (good, bad rows, re-import, reach), listing with masked phones,
the CLI, hostile files, and member counts read from the roster. SQLite and PostgreSQL."""

from __future__ import annotations

import zipfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlmodel import Session

from api.cli import main
from states.errors import InvalidInput
from states.members.importer import import_members
from states.members.models import Member
from states.members.queries import member_count
from states.members.rows import is_id_number, mask_phone
from states.models import Organisation, Role
from states.orgs import child_path
from tests.api_world import World
from tests.factories import make_user
from tests.test_api_matrix import snapshot

HEADER = "姓名,支部编码,党小组编码,类别,入党日期,党员编号,手机号"
GOOD = [
    "党员甲,S1,S1-G1,正式党员,2001-07-01,DY0001,13812341234",
    "党员乙,s1,,预备党员,2025/3/5,,",
    "党员丙,S2,,正式党员,1999年10月1日,DY0003,010-12345678",
    "<script>alert(1)</script>,S3,,正式,20100701,,",
]
ID_NO = "11010519491231002X"  # a well-formed example number (the standard's sample)


def write(tmp_path: Path, lines: list[str], name: str = "roster.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def add_group(w: World) -> None:
    """A 党小组 S1-G1 under S1, and one S2-G1 under S2."""
    with Session(w.engine) as s:
        for code, parent in (("S1-G1", "S1"), ("S2-G1", "S2")):
            branch = s.execute(select(Organisation).where(Organisation.code == parent)).scalar_one()
            s.add(
                Organisation(
                    code=code,
                    name=f"{parent} 第一党小组",
                    kind="党小组",
                    parent_id=branch.id,
                    path=child_path(branch.path, code),
                    depth=branch.depth + 1,
                )
            )
        s.commit()


def members(w: World) -> list[tuple[Any, ...]]:
    with Session(w.engine) as s:
        rows = s.execute(
            select(
                Member.name, Member.org_id, Member.category, Member.joined_on, Member.phone
            ).order_by(Member.name)
        ).all()
    return [tuple(r) for r in rows]


def upload(w: World, who: str, org: str, path: Path, **kw: Any) -> Any:
    with path.open("rb") as handle:
        return w.post(
            who,
            f"/api/v1/orgs/{w.orgs[org].id}/members/import",
            files={"file": (path.name, handle, "application/octet-stream")},
            **kw,
        )


def test_good_import_then_reimport_changes_nothing(world: World, tmp_path: Path) -> None:
    w = world
    add_group(w)
    path = write(tmp_path, [HEADER, *GOOD])
    resp = upload(w, "org_h1", "H1", path)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"created": 4, "updated": 0, "unchanged": 0}
    stored = members(w)
    assert len(stored) == 4
    by_name = {r[0]: r for r in stored}
    assert by_name["党员乙"][1] == w.orgs["S1"].id  # branch codes in any case
    assert by_name["党员乙"][3] == date(2025, 3, 5)
    assert by_name["党员丙"][3] == date(1999, 10, 1) and by_name["党员丙"][4] == "010-12345678"
    assert by_name["<script>alert(1)</script>"][2] == "正式党员"
    before = snapshot(w.engine)
    again = upload(w, "org_h1", "H1", path)
    assert again.json() == {"created": 0, "updated": 0, "unchanged": 4}
    after = snapshot(w.engine)
    assert {k: v for k, v in after.items() if k != "audit_event"} == {
        k: v for k, v in before.items() if k != "audit_event"
    }
    # A changed phone updates one member, found by number; English headers work too.
    english = ["name,branch_code,group_code,category,joined_on,member_no,phone", GOOD[0][:-1] + "9"]
    third = upload(w, "org_h1", "H1", write(tmp_path, english, "en.csv"))
    assert third.json() == {"created": 0, "updated": 1, "unchanged": 0}


def test_every_bad_row_is_named_and_nothing_is_written(world: World, tmp_path: Path) -> None:
    w = world
    add_group(w)
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    lines = [
        f"{HEADER},备注",
        "党员甲,S1,,正式党员,2001-07-01,DY1,13812341234,",  # 2: fine
        "党员乙,NOPE,,正式党员,2001-07-01,,,",  # 3: unknown branch
        "党员丙,S1,S2-G1,正式党员,2001-07-01,,,",  # 4: 党小组 of another branch
        "党员丁,S1,,正式党员,2001-07-01,DY1,,",  # 5: duplicate number
        "党员戊,S1,,正式党员,2001-13-01,,,",  # 6: bad date
        f"党员己,S1,,正式党员,{tomorrow},,,",  # 7: future date
        "党员庚,S1,,群众,2001-07-01,,,",  # 8: bad category
        "党员辛,S1,,正式党员,2001-07-01,,12345,",  # 9: bad phone
        f"党员壬,S1,,正式党员,2001-07-01,,,身份证 {ID_NO}",  # 10: ID number, any column
        "党员癸,S4,,正式党员,2001-07-01,,,",  # 11: outside H1
        ",S1,,正式党员,2001-07-01,,,",  # 12: no name
        "党员丑,S1,,正式党员,2001-07-01,,,",  # 13: fine (no number: identity by name and date)
        "党员丑,S1,,正式党员,2001-07-01,,,",  # 14: repeats row 13
        "党员子,S1-G1,,正式党员,2001-07-01,,,",  # 15: a 党小组 as branch
    ]
    before = snapshot(w.engine)
    resp = upload(w, "org_h1", "H1", write(tmp_path, lines))
    assert resp.status_code == 422, resp.text
    got = {(d["row"], d["column"]) for d in resp.json()["details"]}
    assert got == {
        (3, "支部编码"),
        (4, "党小组编码"),
        (5, "党员编号"),
        (6, "入党日期"),
        (7, "入党日期"),
        (8, "类别"),
        (9, "手机号"),
        (10, "第 8 列"),
        (11, "支部编码"),
        (12, "姓名"),
        (14, "姓名"),
        (15, "支部编码"),
    }
    messages = {d["row"]: d["message"] for d in resp.json()["details"]}
    assert "不在您的管辖范围内" in messages[11] and "身份证" in messages[10]
    assert "第 2 行" in messages[5] and "第 13 行" in messages[14]
    assert snapshot(w.engine) == before


def test_reach_and_rights_of_the_import(world: World, tmp_path: Path) -> None:
    w = world
    own = write(tmp_path, [HEADER, "党员甲,S1,,正式党员,2001-07-01,,"], "own.csv")
    other = write(tmp_path, [HEADER, "党员乙,S2,,正式党员,2001-07-01,,"], "other.csv")
    before = snapshot(w.engine)
    # The sibling subtree: 404 for the list and the import, nothing written.
    assert w.get("admin_h2", f"/api/v1/orgs/{w.orgs['S1'].id}/members").status_code == 404
    assert upload(w, "admin_h2", "S1", own).status_code == 404
    assert upload(w, "sec_s2", "S1", own).status_code == 404
    # A committee member reaches S1 but may not import; a secretary only her own branch.
    assert upload(w, "com_g1", "S1", own).status_code == 403
    resp = upload(w, "sec_s1", "S1", other)
    assert resp.status_code == 422 and resp.json()["details"][0]["column"] == "支部编码"
    # Rows outside the organisation the import was started on are refused too.
    resp = upload(w, "org_h1", "S1", other)
    assert resp.status_code == 422 and "管辖范围" in resp.json()["details"][0]["message"]
    assert snapshot(w.engine) == before
    assert upload(w, "sec_s1", "S1", own).json()["created"] == 1
    # A member number held in another subtree cannot be taken over from here.
    theirs = write(tmp_path, [HEADER, "党员丙,S4,,正式党员,2001-07-01,N9,"], "theirs.csv")
    assert upload(w, "admin_h2", "H2", theirs).status_code == 200
    steal = write(tmp_path, [HEADER, "党员丙,S1,,正式党员,2001-07-01,N9,"], "steal.csv")
    resp = upload(w, "org_h1", "H1", steal)
    assert resp.status_code == 422 and resp.json()["details"][0]["column"] == "党员编号"


def test_phones_are_masked_except_for_the_branch_secretary_and_above(
    world: World, tmp_path: Path
) -> None:
    w = world
    path = write(tmp_path, [HEADER, "党员甲,S1,,正式党员,2001-07-01,,13812341234"])
    assert upload(w, "org_h1", "H1", path).status_code == 200
    with Session(w.engine) as s:
        sup = make_user(s, "sup_h1", ("H1", Role.SUPERVISOR))
        from states.tokens import issue_token

        w.tokens["sup_h1"] = {"Authorization": "Bearer " + issue_token(s, sup.user_id).token}
        s.commit()
    url = f"/api/v1/orgs/{w.orgs['S1'].id}/members"
    seen = {}
    for who in ("sec_s1", "dual", "com_g1", "com_h1", "org_b", "admin_b", "sup_h1"):
        resp = w.get(who, url)
        assert resp.status_code == 200, (who, resp.text)
        item = resp.json()["items"][0]
        seen[who] = (item["phone"], item["phone_masked"])
    full, masked = ("13812341234", False), ("138****1234", True)
    assert seen == {
        "sec_s1": full,
        "dual": full,
        "com_g1": full,
        "com_h1": full,
        "org_b": full,
        "admin_b": full,
        "sup_h1": masked,
    }
    assert w.get("sec_s2", url).status_code == 404
    filtered = w.get("sec_s1", url + "?status=转出").json()
    assert filtered["total"] == 0
    assert w.get("sec_s1", url + "?status=nope").status_code == 422


def test_member_count_comes_from_the_roster(world: World, tmp_path: Path) -> None:
    w = world
    lines = [HEADER, "党员甲,S1,,正式党员,2001-07-01,,", "党员乙,S1,,正式党员,2002-07-01,,"]
    lines += ["党员丙,S1,,正式党员,2003-07-01,,", "党员丁,S1,,预备党员,2025-07-01,,"]
    assert upload(w, "org_h1", "H1", write(tmp_path, lines)).status_code == 200
    with Session(w.engine) as s:
        s1, s2 = s.get(Organisation, w.orgs["S1"].id), s.get(Organisation, w.orgs["S2"].id)
        assert s1 is not None and s2 is not None
        assert member_count(s, s1) == 4 != s1.member_count
        assert member_count(s, s2) == s2.member_count  # no roster: the recorded number
    assert w.get("org_h1", f"/api/v1/orgs/{w.orgs['S1'].id}").json()["member_count"] == 4
    children = w.get("org_h1", f"/api/v1/orgs/{w.orgs['G1'].id}/children").json()["items"]
    assert {c["code"]: c["member_count"] for c in children} == {"S1": 4, "S2": 2}
    with Session(w.engine) as s:
        s.execute(Member.__table__.update().values(status="转出"))  # type: ignore[attr-defined]
        s.commit()
        s1 = s.get(Organisation, w.orgs["S1"].id)
        assert s1 is not None and member_count(s, s1) == 0  # nobody 在册 on a roster: 0


def test_hostile_files_are_refused_cleanly(world: World, tmp_path: Path) -> None:
    w = world
    bomb = tmp_path / "bomb.xlsx"
    with (
        zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as book,
        book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as entry,
    ):
        for _ in range(120):
            entry.write(b" " * (1 << 20))
    exe = tmp_path / "program.xlsx"
    exe.write_bytes(b"MZ\x90\x00" + b"\x00" * 4096)
    before = snapshot(w.engine)
    assert upload(w, "org_h1", "H1", bomb).status_code == 413
    resp = upload(w, "org_h1", "H1", exe)
    assert resp.status_code == 422 and "xlsx" in resp.json()["message"]
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * (11 * 1024 * 1024 + 1))
    assert upload(w, "org_h1", "H1", big).status_code == 413
    assert upload(w, "org_h1", "H1", write(tmp_path, ["a,b", "1,2"])).status_code == 422
    assert snapshot(w.engine) == before


def test_the_cli_import(
    world: World, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("DANGJIAN_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    good = write(tmp_path, [HEADER, *GOOD[1:]])
    bad = write(tmp_path, [HEADER, "党员乙,NOPE,,正式党员,2001-07-01,,"], "bad.csv")
    r = runner.invoke(main, ["members", "import", str(good), "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "将新增 3" in r.output and members(world) == []
    r = runner.invoke(main, ["members", "import", str(bad)])
    assert r.exit_code == 2 and "第 2 行 [支部编码]" in r.output
    r = runner.invoke(main, ["members", "import", str(bad), "--dry-run"])
    assert r.exit_code == 2
    r = runner.invoke(main, ["members", "import", str(good)])
    assert r.exit_code == 0 and "新增 3" in r.output
    r = runner.invoke(main, ["members", "import", str(good)])
    assert "未变 3" in r.output and len(members(world)) == 3


def test_row_limit_and_direct_import(session: Session, tmp_path: Path) -> None:
    from states.sheets import SheetLimits
    from tests.factories import make_tree

    make_tree(session)
    lines = [HEADER] + [f"党员{i},S1,,正式党员,2001-07-01,N{i},138{i:08d}" for i in range(30)]
    path = write(tmp_path, lines)
    with pytest.raises(InvalidInput, match="行数超过上限"):
        import_members(session, path, limits=SheetLimits(max_rows=10))
    session.rollback()
    result = import_members(session, path)
    session.commit()
    assert result.created == 30
    total = session.execute(select(func.count()).select_from(Member)).scalar_one()
    assert total == 30


def test_row_helpers() -> None:
    assert is_id_number(ID_NO) and not is_id_number("110105194912310021")
    assert not is_id_number("13812341234")
    assert mask_phone("13812341234") == "138****1234"
    assert mask_phone("010-12345678") == "010-****5678"


def test_the_roster_page(world: World, tmp_path: Path) -> None:
    from tests.browser import web_user

    w = world
    path = write(tmp_path, [HEADER, *GOOD[:2], "<b>党员</b>,S1,,正式党员,2003-07-01,,13900001111"])
    add_group(w)
    sec = web_user(w.client.app, "sec_s1")
    url = f"/orgs/{w.orgs['S1'].id}/members"
    with path.open("rb") as handle:
        resp = sec.client.post(
            url + "/import",
            data={"csrf_token": sec.csrf},
            files={"file": ("roster.csv", handle, "text/csv")},
            follow_redirects=False,
        )
    assert resp.status_code == 303, resp.text[:500]
    page = sec.get(url).text
    assert "13812341234" in page and "&lt;b&gt;党员&lt;/b&gt;" in page and "<b>党员" not in page
    assert "S1 第一党小组" in page and 'action="' + url + '/import"' in page
    org_page = sec.get(f"/orgs/{w.orgs['S1'].id}").text
    assert f'href="{url}"' in org_page
    # A supervisor above sees the roster with masked phones and no import form.
    with Session(w.engine) as s:
        make_user(s, "sup_web", ("G1", Role.SUPERVISOR))
    sup = web_user(w.client.app, "sup_web").get(url).text
    assert "138****1234" in sup and "13812341234" not in sup and "/import" not in sup
    # Bad rows are listed with their row and column; nothing is written.
    bad = write(tmp_path, [HEADER, "党员庚,S1,,群众,2001-07-01,,"], "bad.csv")
    with bad.open("rb") as handle:
        resp = sec.client.post(
            url + "/import",
            data={"csrf_token": sec.csrf},
            files={"file": ("bad.csv", handle, "text/csv")},
        )
    assert resp.status_code == 422 and "第 2 行" in resp.text and "类别无效" in resp.text
    assert len(members(w)) == 3


def test_the_roster_page_in_chromium(browser: Any, live_world: Any, tmp_path: Path) -> None:
    from tests.browser import DESKTOP, PHONE, login, shot

    live = live_world
    w = live.world
    lines = [HEADER, "党员甲,S1,,正式党员,2001-07-01,DY0001,13812341234", GOOD[1]]
    path = write(tmp_path, [*lines, "<i>党员丁</i>,S1,,正式党员,2003-07-01,,13900001111"])
    for viewport, name in ((PHONE, "members-375"), (DESKTOP, "members-desktop")):
        context = browser.new_context(viewport=viewport, locale="zh-CN")
        page = context.new_page()
        login(page, live.base_url, "sec_s1")
        page.goto(live.url(f"/orgs/{w.orgs['S1'].id}/members"))
        if name == "members-375":
            page.set_input_files("#file", str(path))
            page.click("form[action$='/members/import'] button[type=submit]")
            page.wait_for_selector("#roster")
        assert page.locator("#roster tbody tr").count() == 3
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= viewport["width"], width
        shot(page, name)
        context.close()


def test_identities_across_rows_and_the_stored_roster(world: World, tmp_path: Path) -> None:
    """Same answers on both paths (chunked on SQLite, staged on PostgreSQL)."""
    w = world
    same_person = [
        HEADER,
        "党员甲,S1,,正式党员,2001-07-01,DY1,",
        "党员甲,S1,,正式党员,2001-07-01,,",
    ]
    resp = upload(w, "org_h1", "H1", write(tmp_path, same_person, "same.csv"))
    assert resp.status_code == 422
    assert [(d["row"], d["column"]) for d in resp.json()["details"]] == [(3, "姓名")]
    assert members(w) == []
    # A stored member without a number gets one from a row matching her identity.
    first = [
        HEADER,
        "党员乙,S1,,正式党员,2002-07-01,,13800000001",
        '"党员\\戊\t丁",S1,,正式,2003-07-01,,',
    ]
    assert upload(w, "org_h1", "H1", write(tmp_path, first, "a.csv")).json()["created"] == 2
    assert "党员\\戊 丁" in [m[0] for m in members(w)]  # a backslash kept, a tab a space
    numbered = [
        HEADER,
        "党员乙,S1,,正式党员,2002-07-01,DY2,",
        "党员丙,S1,,正式党员,2002-07-01,DY3,",
    ]
    resp = upload(w, "org_h1", "H1", write(tmp_path, numbered, "b.csv"))
    assert resp.json() == {"created": 1, "updated": 1, "unchanged": 0}
    assert upload(w, "org_h1", "H1", write(tmp_path, first, "a.csv")).json()["unchanged"] == 2
    with Session(w.engine) as s:
        got = s.execute(select(Member.member_no, Member.phone).where(Member.name == "党员乙")).one()
    assert tuple(got) == ("DY2", "13800000001")  # a blank phone keeps the stored one
    # Two rows naming one stored member (by number, then by identity): the second is refused.
    twice = [HEADER, "党员乙,S1,,正式党员,2002-07-01,DY2,", "党员乙,S1,,正式党员,2002-07-01,,"]
    resp = upload(w, "org_h1", "H1", write(tmp_path, twice, "c.csv"))
    assert resp.status_code == 422
    assert [(d["row"], d["column"]) for d in resp.json()["details"]] == [(3, "姓名")]
    # Two stored members share branch, name and date: a row without a number is ambiguous.
    other = [HEADER, "党员乙,S1,,正式党员,2002-07-01,DY4,"]
    assert upload(w, "org_h1", "H1", write(tmp_path, other, "d.csv")).json()["created"] == 1
    blank = [HEADER, "党员乙,S1,,正式党员,2002-07-01,,"]
    resp = upload(w, "org_h1", "H1", write(tmp_path, blank, "e.csv"))
    assert resp.status_code == 422
    detail = resp.json()["details"][0]
    assert (detail["row"], detail["column"]) == (2, "党员编号") and "已有 2 名" in detail["message"]
    # A transfer: status and date are kept or replaced as written; re-import changes nothing.
    moved = ["姓名,支部编码,类别,入党日期,党员编号,状态,状态日期"]
    moved.append("党员丙,S2,正式党员,2002-07-01,DY3,转出,2025-01-02")
    path = write(tmp_path, moved, "f.csv")
    assert upload(w, "org_h1", "H1", path).json() == {"created": 0, "updated": 1, "unchanged": 0}
    assert upload(w, "org_h1", "H1", path).json() == {"created": 0, "updated": 0, "unchanged": 1}
    with Session(w.engine) as s:
        row = s.execute(select(Member).where(Member.member_no == "DY3")).scalar_one()
        assert (row.org_id, row.status, row.status_on) == (
            w.orgs["S2"].id,
            "转出",
            date(2025, 1, 2),
        )

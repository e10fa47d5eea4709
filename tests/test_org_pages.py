"""The organisation pages count and name what they show: a committee's 党员人数 sums the branches
below it (each by its roster, else its recorded number), the 书记 column names the users holding
the secretary role where the record names no one, and the sample import file hangs under an
organisation the reader manages, so it imports as downloaded.
"""

from __future__ import annotations

import re
from datetime import date

from sqlmodel import Session, select

from states.members.models import Member
from states.models import Organisation
from tests.api_world import World
from tests.browser import web_user


def _add_roster(w: World, code: str, active: int, gone: int) -> None:
    with Session(w.engine) as s:
        org_id = w.orgs[code].id or 0
        for i in range(active + gone):
            status = "在册" if i < active else "转出"
            name = f"党员{code}{i}"
            s.add(
                Member(
                    org_id=org_id,
                    name=name,
                    category="正式党员",
                    status=status,
                    joined_on=date(2001, 1, 1 + i),
                )
            )
        s.commit()


def _row(html: str, name: str) -> str:
    found = re.search(rf"<tr>\s*<td data-label=\"组织\"><a [^>]*>{name}</a>.*?</tr>", html, re.S)
    assert found, name
    return found.group(0)


def _cell(row: str, label: str) -> str:
    found = re.search(rf'<td data-label="{label}">([^<]*)</td>', row)
    assert found, label
    return found.group(1)


def test_committees_sum_their_branches_and_secretaries_come_from_grants(world: World) -> None:
    w = world
    # S1 keeps a roster (4 在册, 1 转出): it counts 4, not its recorded 3; S2 (2) and S3 (2)
    # have no roster and count their recorded numbers.
    _add_roster(w, "S1", active=4, gone=1)
    admin = web_user(w.client.app, "admin_b")
    h1 = admin.get(f"/orgs/{w.orgs['H1'].id}").text
    assert re.search(r"<dt>党员人数</dt><dd>8\b", h1)  # 4 + 2 + 2
    g1 = _row(h1, "第一医院内科党总支")
    assert _cell(g1, "党员人数") == "6"  # 4 + 2
    assert _cell(_row(h1, "第一医院机关党支部"), "党员人数") == "2"
    g1_page = admin.get(f"/orgs/{w.orgs['G1'].id}").text
    # The secretary role's holders, where the organisation's record names nobody.
    assert _cell(_row(g1_page, "内科第一党支部"), "书记") == "dual、sec_s1"
    assert _cell(_row(g1_page, "内科第二党支部"), "书记") == "sec_s2"
    s1_page = admin.get(f"/orgs/{w.orgs['S1'].id}").text
    assert re.search(r"<dt>党员人数</dt><dd>4\b", s1_page)
    assert "<dt>书记</dt><dd>dual、sec_s1</dd>" in s1_page
    # A name on the record wins over the grants.
    with Session(w.engine) as s:
        org = s.get_one(Organisation, w.orgs["S2"].id)
        org.secretary_name = "支部书记乙"
        s.add(org)
        s.commit()
    g1_page = admin.get(f"/orgs/{w.orgs['G1'].id}").text
    assert _cell(_row(g1_page, "内科第二党支部"), "书记") == "支部书记乙"
    top = admin.get("/orgs").text
    assert _cell(_row(top, "示例市卫生局党委"), "党员人数") == "10"  # 4 + 2 + 2 + S4's 2


def test_the_sample_file_imports_as_downloaded(world: World) -> None:
    w = world
    organiser = web_user(w.client.app, "org_h1")
    sample = organiser.get("/orgs/import/sample.csv")
    assert sample.status_code == 200
    text = sample.content.decode("utf-8-sig")
    assert "H1-X1,示例党总支,党总支,H1," in text  # under the organisation the organiser manages
    resp = organiser.client.post(
        "/orgs/import",
        data={"csrf_token": organiser.csrf},
        files={"file": ("orgs-sample.csv", sample.content, "text/csv")},
        follow_redirects=False,
    )
    assert resp.status_code in (200, 303), resp.text[:500]
    with Session(w.engine) as s:
        made = s.execute(
            select(Organisation.code, Organisation.path).where(
                Organisation.code.in_(["H1-X1", "H1-X1-S1"])  # type: ignore[attr-defined]
            )
        ).all()
    assert {str(c): str(p) for c, p in made} == {
        "H1-X1": "/B/H1/H1-X1/",
        "H1-X1-S1": "/B/H1/H1-X1/H1-X1-S1/",
    }

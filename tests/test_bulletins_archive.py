"""The archive of 简报 and 通报, on SQLite and PostgreSQL: the listing (both kinds, newest first,
paged), each item as JSON, as a PDF whose text (pdftotext) holds the Chinese title, the
organisations and the chart labels, and as a printable page; the robots' bulletin message links
to the bulletin's page; ids outside reach are 404 everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from notifications import relay
from states import bulletins
from states.models import Bulletin, Role
from states.notice_settings import ChannelSpec, add_channel
from states.supervision import service
from states.timeutil import utcnow
from states.users import load_actor
from tests.api_world import World
from tests.browser import web_user
from tests.factories import make_user
from tests.stand_ins import RobotServer

PDFTOTEXT = shutil.which("pdftotext")


def pdf_text(data: bytes, tmp_path: Path) -> str:
    if PDFTOTEXT is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    out = subprocess.run([PDFTOTEXT, "-enc", "UTF-8", str(path), "-"], capture_output=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.decode("utf-8")


def _publish(w: World, weeks_ago: int = 0) -> None:
    with Session(w.engine) as s:
        bulletins.publish(s, w.campaign_id, utcnow() - timedelta(weeks=weeks_ago))
        s.commit()


def _circular(w: World) -> int:
    with Session(w.engine, expire_on_commit=False) as s:
        sup = make_user(s, "sup_h1", ("H1", Role.SUPERVISOR))
        s.commit()
        c = service.issue_circular(
            s,
            load_actor(s, sup.user_id),
            org_id=w.orgs["G1"].id or 0,
            title="关于内科党总支组织生活的通报",
            text="督导组检查发现以下支部存在问题。",
            items=[service.NamedItem(w.orgs["S2"].id or 0, "三会一课记录不全")],
        )
        s.commit()
        return c.id or 0


def _bulletin_id(w: World, org: str) -> int:
    with Session(w.engine) as s:
        stmt = select(Bulletin.id).where(col(Bulletin.org_id) == w.orgs[org].id)
        return int(s.execute(stmt.order_by(col(Bulletin.as_of).desc())).scalars().first() or 0)


def test_the_archive_lists_both_kinds_newest_first_and_pages(world: World) -> None:
    w = world
    _publish(w, weeks_ago=1)
    _publish(w)
    cid = _circular(w)
    listing = w.get("com_g1", f"/api/v1/orgs/{w.orgs['G1'].id}/bulletins").json()
    assert listing["total"] == 3
    kinds = [i["kind"] for i in listing["items"]]
    assert kinds == ["circular", "bulletin", "bulletin"]
    first = listing["items"][0]
    assert first["id"] == cid and first["url"] == f"/api/v1/circulars/{cid}"
    assert first["pdf_url"] == f"/api/v1/circulars/{cid}.pdf"
    assert first["page_url"] == f"/circulars/{cid}"
    newer, older = listing["items"][1:]
    assert newer["created_at"] >= older["created_at"] and newer["id"] > older["id"]
    assert "简报" in newer["title"] and newer["org_name"] == "第一医院内科党总支"
    page = w.get("com_g1", f"/api/v1/orgs/{w.orgs['G1'].id}/bulletins?limit=1&offset=2").json()
    assert [i["id"] for i in page["items"]] == [older["id"]] and page["total"] == 3
    # The 通报 on G1 is in the archive of the branches below it, not of its sibling H1 units.
    s2 = w.get("sec_s2", f"/api/v1/orgs/{w.orgs['S2'].id}/bulletins").json()
    assert [i["kind"] for i in s2["items"]] == ["circular"]
    s3 = w.get("com_h1", f"/api/v1/orgs/{w.orgs['S3'].id}/bulletins").json()
    assert s3["items"] == []


def test_a_bulletin_as_json_and_pdf_with_its_charts(world: World, tmp_path: Path) -> None:
    w = world
    _publish(w)
    bid = _bulletin_id(w, "H1")
    got = w.get("com_h1", f"/api/v1/bulletins/{bid}").json()
    assert got["org"]["code"] == "H1" and got["data"]["total"] == 3
    assert got["pdf_url"] == f"/api/v1/bulletins/{bid}.pdf"
    r = w.get("com_h1", f"/api/v1/bulletins/{bid}.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert r.content.startswith(b"%PDF")
    text = pdf_text(r.content, tmp_path)
    assert "简" in text and "报" in text
    assert got["data"]["campaign"] in text and "第一医院党委" in text
    assert "完成情况" in text and "各阶段单位数" in text
    for stage in got["data"]["stages"]:
        assert stage["name"] in text


def test_a_circular_as_json_pdf_and_page(world: World, tmp_path: Path) -> None:
    w = world
    cid = _circular(w)
    got = w.get("sec_s2", f"/api/v1/circulars/{cid}").json()
    assert got["title"] == "关于内科党总支组织生活的通报"
    assert got["orgs"] == [
        {
            "org": {
                "id": w.orgs["S2"].id,
                "code": "S2",
                "name": "内科第二党支部",
                "kind": "党支部",
            },
            "reason": "三会一课记录不全",
        }
    ]
    r = w.get("sec_s2", f"/api/v1/circulars/{cid}.pdf")
    assert r.status_code == 200
    text = pdf_text(r.content, tmp_path)
    for words in (
        "关于内科党总支组织生活的通报",
        "第一医院内科党总支",
        "内科第二党支部",
        "三会一课记录不全",
    ):
        assert words in text
    page = web_user(w.client.app, "sec_s2").get(f"/circulars/{cid}")
    assert page.status_code == 200 and "@media print" in page.text
    assert "三会一课记录不全" in page.text and f'href="/circulars/{cid}/pdf"' in page.text


def test_the_pages_print_and_link_the_pdf_and_archive(world: World) -> None:
    w = world
    _publish(w)
    bid = _bulletin_id(w, "H1")
    user = web_user(w.client.app, "com_h1")
    page = user.get(f"/bulletins/{bid}")
    assert page.status_code == 200 and "@media print" in page.text
    assert f'href="/bulletins/{bid}/pdf"' in page.text and 'class="bars"' in page.text
    pdf = user.get(f"/bulletins/{bid}/pdf")
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
    archive = user.get(f"/orgs/{w.orgs['H1'].id}/bulletins")
    assert archive.status_code == 200 and f'href="/bulletins/{bid}"' in archive.text


def test_the_robots_bulletin_message_links_to_its_page(world: World) -> None:
    w = world
    with RobotServer("webhook") as hook:
        with Session(w.engine) as s:
            add_channel(s, s.merge(w.orgs["H1"]), ChannelSpec(kind="webhook", url=hook.url))
            s.commit()
        _publish(w)
        relay.drain(w.engine, env={"DANGJIAN_BASE_URL": "https://dj.example.org"})
        bid = _bulletin_id(w, "H1")
        (sent,) = [r.json for r in hook.accepted() if r.json["event_kind"] == "bulletin"]
    assert sent["link"] == f"https://dj.example.org/bulletins/{bid}"


def test_foreign_ids_are_not_found(world: World) -> None:
    w = world
    _publish(w)
    cid = _circular(w)
    bid = _bulletin_id(w, "H1")
    for user in ("admin_h2", "sec_s4", "sec_s1"):  # sec_s1 reaches S1 alone, not H1
        assert w.get(user, f"/api/v1/bulletins/{bid}").status_code == 404
        assert w.get(user, f"/api/v1/bulletins/{bid}.pdf").status_code == 404
        assert w.get(user, f"/api/v1/orgs/{w.orgs['H1'].id}/bulletins").status_code == 404
    for user in ("admin_h2", "sec_s4"):
        assert w.get(user, f"/api/v1/circulars/{cid}").status_code == 404
        assert w.get(user, f"/api/v1/circulars/{cid}.pdf").status_code == 404
    assert w.get("com_h1", "/api/v1/bulletins/999999").status_code == 404
    assert w.get("com_h1", "/api/v1/circulars/999999.pdf").status_code == 404
    sibling = web_user(w.client.app, "admin_h2")
    for url in (f"/bulletins/{bid}/pdf", f"/circulars/{cid}", f"/orgs/{w.orgs['H1'].id}/bulletins"):
        assert sibling.get(url).status_code == 404

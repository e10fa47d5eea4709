"""Organisations and import, templates and the diagram, the in-app inbox, the serve command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

from click.testing import CliRunner
from sqlmodel import Session, func, select

from api.cli import main
from states import inbox
from states.models import Organisation
from tests.api_world import World

HEADER = "编码,名称,类型,上级编码,党员人数\n"


def _orgs(w: World) -> int:
    with Session(w.engine) as s:
        return int(s.execute(select(func.count()).select_from(Organisation)).scalar_one())


def _upload(w: World, who: str, text: str, name: str = "orgs.csv") -> object:
    files = {"file": (name, text.encode("utf-8"), "text/csv")}
    return w.client.post("/api/v1/orgs/import", headers=w.as_(who), files=files)


def test_org_reads_follow_the_reach(world: World) -> None:
    w = world
    g1 = w.orgs["G1"].id
    assert w.get("com_h1", f"/api/v1/orgs/{g1}").json()["code"] == "G1"
    kids = w.get("com_h1", f"/api/v1/orgs/{g1}/children").json()
    assert [o["code"] for o in kids["items"]] == ["S1", "S2"]
    sub = w.get("org_b", f"/api/v1/orgs/{w.orgs['B'].id}/subtree", params={"kind": "党支部"}).json()
    assert sorted(o["code"] for o in sub["items"]) == ["S1", "S2", "S3", "S4"]
    # A secretary reaches her own branch only, not its parent.
    assert w.get("sec_s1", f"/api/v1/orgs/{w.orgs['S1'].id}").status_code == 200
    assert w.get("sec_s1", f"/api/v1/orgs/{g1}").status_code == 404


def test_import_within_the_subtree(world: World) -> None:
    w = world
    before = _orgs(w)
    r = _upload(w, "org_h1", HEADER + "S9,新建党支部,党支部,G1,5\n")
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 1, "updated": 0, "unchanged": 0}
    assert _orgs(w) == before + 1
    # Outside the organiser's subtree: every row reported, nothing written.
    r = _upload(w, "org_h1", HEADER + "S10,越界支部,党支部,H2,3\nS11,无上级,党支部,,3\n")
    assert r.status_code == 422
    rows = [d["row"] for d in r.json()["details"]]
    assert rows == [2, 3]
    assert _orgs(w) == before + 1
    # Bad rows: the same all-or-nothing errors as the CLI.
    r = _upload(w, "org_h1", HEADER + "S12,,党支部,G1,3\nS13,支部,公司,G1,x\n")
    assert r.status_code == 422
    assert {d["column"] for d in r.json()["details"]} >= {"名称", "类型"}
    assert _orgs(w) == before + 1
    # Only organisers and admins may import; other files are refused in words.
    assert _upload(w, "com_h1", HEADER).status_code == 403
    r = _upload(w, "org_h1", "x", name="orgs.txt")
    assert r.status_code == 422 and "CSV" in r.json()["message"]


def test_templates_and_their_diagram(world: World) -> None:
    w = world
    listed = w.get("sec_s1", "/api/v1/templates").json()
    assert {"chuangxian_zhengyou", "sqsy_fuwuxing", "jinwei_shengji"} <= {t["key"] for t in listed}
    detail = w.get("sec_s1", "/api/v1/templates/chuangxian_zhengyou").json()
    assert detail["stages"][0] == "mobilize"
    first = detail["stage_details"][0]
    assert first["requirements"][0]["label"]
    triggers = {(t["source"], t["trigger"], t["dest"]) for t in detail["transitions"]}
    assert ("mobilize", "advance", "pledge") in triggers
    assert ("pledge", "return_to_mobilize", "mobilize") in triggers
    r = w.get("sec_s1", "/api/v1/templates/chuangxian_zhengyou/diagram")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(r.text)
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "宣传发动" in texts and "已完成" in texts
    assert w.get("sec_s1", "/api/v1/templates/nope").status_code == 404


def test_inbox_is_per_user(world: World) -> None:
    w = world
    with Session(w.engine) as s:
        inbox.post(s, user_ids=[w.actors["sec_s1"].user_id], kind="reminder", title="还有 3 天截止")
        inbox.post(s, user_ids=[w.actors["sec_s1"].user_id], kind="overdue", title="已逾期")
        s.commit()
    page = w.get("sec_s1", "/api/v1/notifications").json()
    assert page["total"] == 2 and page["unread"] == 2
    assert page["items"][0]["title"] == "已逾期"  # newest first
    nid = page["items"][0]["id"]
    assert w.post("sec_s2", f"/api/v1/notifications/{nid}/read").status_code == 404
    r = w.post("sec_s1", f"/api/v1/notifications/{nid}/read")
    assert r.status_code == 200 and r.json()["read_at"]
    page = w.get("sec_s1", "/api/v1/notifications", params={"unread": True}).json()
    assert page["total"] == 1 and page["unread"] == 1
    assert w.get("sec_s2", "/api/v1/notifications").json()["total"] == 0


def test_the_api_process_does_not_import_prefect() -> None:
    code = (
        "import sys, api.app, api.cli\n"
        "from api.app import create_app\n"
        "from states.db import make_engine\n"
        "create_app(make_engine('sqlite://'))\n"
        "assert 'prefect' not in sys.modules, 'prefect was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_serve_refuses_an_unmigrated_database(tmp_path: Path, monkeypatch: object) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    result = runner.invoke(main, ["serve", "--port", "1"], env=env)
    assert result.exit_code == 1
    assert "dangjian db upgrade" in result.output

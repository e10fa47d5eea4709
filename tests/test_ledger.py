"""The 台账 workbooks: a run's (cover, stages, attendance, commitments, history, audit head) from
the API, the pages and the command line; a committee's summary as a background job with progress
and an expiring download; reach (foreign ids are 404) and formula-injection cells."""

from __future__ import annotations

import io
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from click.testing import CliRunner
from sqlalchemy import insert, text, update
from sqlmodel import Session, col, select

from api.cli import main
from states import runs
from states.jobs.models import Job
from states.jobs.service import INTERRUPTED
from states.members.models import Member
from states.models import Attachment, AuditEvent, Evidence, EvidenceLink, Organisation, Run
from states.timeutil import to_local, utcnow
from tests.api_world import World
from tests.browser import web_user
from workflows import jobs

INJECTIONS = ['=HYPERLINK("http://evil.example","点我")', "+1+1", "-2+3", "@SUM(A1)"]


def _members(w: World) -> list[int]:
    """Three members on S1's roster."""
    with Session(w.engine) as s:
        rows = [
            Member(
                org_id=w.orgs["S1"].id or 0, name=n, category="正式党员", joined_on=date(2001, 7, 1)
            )
            for n in ("党员甲", "党员乙", "党员丙")
        ]
        s.add_all(rows)
        s.commit()
        return [m.id or 0 for m in rows]


def _walk_s1(w: World) -> dict[str, Any]:
    """S1 records a meeting (乙 absent, 请假), mobilize is approved, then two commitments."""
    ids = _members(w)
    run_id = w.runs["S1"]
    sec = w.actors["sec_s1"]
    meeting = {
        "date": "2026-11-20",
        "title": "动员大会",
        "attendees": [ids[0], ids[2]],
        "absences": [{"member_id": ids[1], "reason": "请假"}],
    }
    with Session(w.engine) as s:
        runs.record_evidence(s, run_id=run_id, actor=sec, kind="meeting", data=meeting)
        req = runs.request_advance(s, run_id=run_id, actor=sec, comment="@请审批")
        s.commit()
        for approver in ("com_g1", "com_h1"):
            if req.status != "pending":
                break
            req = runs.approve(
                s, request_id=req.id or 0, actor=w.actors[approver], opinion="材料齐全，同意"
            )
            s.commit()
        for member_id, words in zip(ids[:2], INJECTIONS[:2], strict=True):
            data = {"member_id": member_id, "text": words}
            runs.record_evidence(s, run_id=run_id, actor=sec, kind="commitment", data=data)
        s.commit()
        run = s.get(Run, run_id)
        assert run is not None and run.stage != "mobilize"
        return {"members": ids, "hash": run.audit_hash, "seq": run.audit_seq}


def _book(content: bytes) -> Any:
    return openpyxl.load_workbook(io.BytesIO(content))


def _values(ws: Any) -> list[list[Any]]:
    return [list(r) for r in ws.iter_rows(values_only=True)]


def test_the_run_workbook_has_its_sheets_headers_rows_and_audit_head(world: World) -> None:
    w = world
    walked = _walk_s1(w)
    with Session(w.engine) as s:  # a file on the meeting's record (the row is what is listed)
        meeting = s.execute(select(Evidence).where(Evidence.kind == "meeting")).scalar_one()
        photo = Attachment(
            evidence_id=meeting.id or 0,
            sha256="0" * 64,
            size=1,
            content_type="image/png",
            filename="会场.png",
        )
        s.add(photo)
        s.commit()
        photo_id = photo.id
    resp = w.get("sec_s1", f"/api/v1/runs/{w.runs['S1']}/ledger.xlsx")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/vnd.openxmlformats")
    assert "filename*=utf-8''" in resp.headers["content-disposition"].lower()
    book = _book(resp.content)
    assert book.sheetnames == [
        "封面",
        "宣传发动",
        "公开承诺",
        "全面争创",
        "领导点评",
        "群众评议",
        "评选表彰",
        "出勤",
        "承诺",
        "历史",
    ]
    cover = _values(book["封面"])
    facts = {r[0]: r[1] for r in cover if r[0]}
    assert facts["组织"] == "内科第一党支部（S1）"
    # The audit head is the run's, and the last event of its chain carries it.
    assert facts["审计链末条哈希"] == walked["hash"]
    assert facts["审计链"] == f"run:{w.runs['S1']}，共 {walked['seq']} 条事件"
    with Session(w.engine) as s:
        last = (
            s.execute(
                select(AuditEvent)
                .where(AuditEvent.stream == f"run:{w.runs['S1']}")
                .order_by(col(AuditEvent.seq).desc())
            )
            .scalars()
            .first()
        )
        assert last is not None and last.hash == walked["hash"]
        advanced_at = to_local(last.at).replace(tzinfo=None, microsecond=0)
    mobilize = next(r for r in cover if r[0] == "宣传发动")
    assert mobilize[2] is not None and abs(mobilize[2] - advanced_at) < timedelta(minutes=1)
    assert "材料齐全，同意" in mobilize[3] and "com_g1" in mobilize[3]
    stage = _values(book["宣传发动"])
    assert stage[1][:4] == ["序号", "类型", "内容", "录入人"]
    assert stage[2][1] == "会议" and "动员大会" in stage[2][2]
    assert stage[2][6] == "会场.png" and stage[2][7] == f"http://testserver/files/{photo_id}"
    attendance = {r[0]: r for r in _values(book["出勤"])[2:]}
    assert attendance["党员乙"][2:5] == (1, 0, 1) or attendance["党员乙"][2:5] == [1, 0, 1]
    assert "请假" in attendance["党员乙"][5]
    assert attendance["党员甲"][3] == 1
    history = _values(book["历史"])
    assert history[1] == ["序号", "时间", "操作", "操作人", "说明", "哈希"]
    assert history[-1][5] == walked["hash"]
    assert "动员大会" not in str(_values(book["公开承诺"]))


def test_text_that_looks_like_a_formula_is_written_as_text(world: World) -> None:
    w = world
    _walk_s1(w)
    book = _book(w.get("sec_s1", f"/api/v1/runs/{w.runs['S1']}/ledger.xlsx").content)
    cells = {c.value: c for row in book["承诺"].iter_rows() for c in row if c.value}
    for words in INJECTIONS[:2]:
        assert cells[words].data_type == "s" and cells[words].quotePrefix, words
    assert cells["（未填写）"].row > 2  # 党员丙 wrote none
    history = {c.value: c for row in book["历史"].iter_rows() for c in row if c.value}
    assert history["@请审批"].data_type == "s" and history["@请审批"].quotePrefix


def test_sheets_are_frozen_sized_and_set_up_for_a4_landscape(world: World) -> None:
    w = world
    _walk_s1(w)
    book = _book(w.get("sec_s1", f"/api/v1/runs/{w.runs['S1']}/ledger.xlsx").content)
    for ws in book.worksheets:
        assert ws.freeze_panes == "A3", ws.title
        assert ws.page_setup.orientation == "landscape" and ws.page_setup.paperSize == 9
        assert ws.print_title_rows == "$1:$2"
        assert ws.column_dimensions["A"].width >= 6


def _wait(w: World, who: str, job_id: int) -> dict[str, Any]:
    for _ in range(200):
        body = w.get(who, f"/api/v1/jobs/{job_id}").json()
        assert "status" in body, body
        if body["status"] in ("done", "failed"):
            return dict(body)
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def _grade_and_overdue(w: World) -> None:
    """S2 graded 好 by a decision record; S3 three days overdue at escalation level 2."""
    with Session(w.engine) as s:
        ev = Evidence(
            org_id=w.orgs["S2"].id or 0,
            run_id=w.runs["S2"],
            stage="mobilize",
            kind="decision",
            subject="好",
            data={"grade": "好"},
        )
        s.add(ev)
        s.flush()
        s.add(EvidenceLink(evidence_id=ev.id or 0, run_id=w.runs["S2"], stage="mobilize"))
        s.execute(
            update(Run)
            .where(col(Run.id) == w.runs["S3"])
            .values(deadline=utcnow() - timedelta(days=3, hours=1), escalation_level=2)
        )
        s.commit()


def test_the_committee_workbook_is_a_background_job_with_progress_and_a_download(
    world: World,
) -> None:
    w = world
    _grade_and_overdue(w)
    h1 = w.orgs["H1"].id
    resp = w.post(
        "com_h1",
        f"/api/v1/campaigns/{w.campaign_id}/ledger",
        json={"org_id": h1, "per_branch": True},
    )
    assert resp.status_code == 202, resp.text
    job = _wait(w, "com_h1", resp.json()["id"])
    assert job["status"] == "done", job
    assert job["done"] == job["total"] == 3
    url = job["download_url"]
    assert url.startswith("http://testserver/d/")
    got = w.client.get(url.removeprefix("http://testserver"))  # no login: the token is the key
    assert got.status_code == 200
    book = _book(got.content)
    assert book.sheetnames[0] == "汇总" and len(book.sheetnames) == 4
    rows = _values(book["汇总"])
    assert rows[1][:6] == ["序号", "组织编码", "组织名称", "上级组织", "当前阶段", "截止日期"]
    by_code = {r[1]: r for r in rows[2:]}
    assert set(by_code) == {"S1", "S2", "S3"}
    assert by_code["S2"][8] == "好"
    assert by_code["S3"][6] in (3, 4) and by_code["S3"][7] == 2
    assert by_code["S1"][6] is None and by_code["S1"][4] == "宣传发动"
    assert book.worksheets[1]["A1"].value.startswith("内科第一党支部（S1）")


def test_only_the_requester_sees_a_job_and_foreign_ids_are_404(world: World) -> None:
    w = world
    resp = w.post(
        "com_h1", f"/api/v1/campaigns/{w.campaign_id}/ledger", json={"org_id": w.orgs["H1"].id}
    )
    job_id = resp.json()["id"]
    _wait(w, "com_h1", job_id)
    assert w.get("com_g1", f"/api/v1/jobs/{job_id}").status_code == 404
    assert w.get("admin_h2", f"/api/v1/jobs/{job_id}").status_code == 404
    assert w.get("admin_h2", f"/api/v1/runs/{w.runs['S1']}/ledger.xlsx").status_code == 404
    assert w.get("sec_s2", f"/api/v1/runs/{w.runs['S1']}/ledger.xlsx").status_code == 404
    with Session(w.engine) as s:
        before = s.execute(text("SELECT count(*) FROM job")).scalar_one()
    foreign = w.post(
        "admin_h2", f"/api/v1/campaigns/{w.campaign_id}/ledger", json={"org_id": w.orgs["H1"].id}
    )
    assert foreign.status_code == 404, foreign.text
    # A committee below the root cannot export the root's subtree either.
    above = w.post(
        "com_g1", f"/api/v1/campaigns/{w.campaign_id}/ledger", json={"org_id": w.orgs["H1"].id}
    )
    assert above.status_code == 404
    with Session(w.engine) as s:
        assert s.execute(text("SELECT count(*) FROM job")).scalar_one() == before


def test_an_expired_download_is_410_and_its_file_is_deleted(world: World) -> None:
    w = world
    resp = w.post("com_h1", f"/api/v1/campaigns/{w.campaign_id}/ledger", json={})
    job = _wait(w, "com_h1", resp.json()["id"])
    path = job["download_url"].removeprefix("http://testserver")
    with Session(w.engine) as s:
        row = s.get(Job, job["id"])
        assert row is not None and row.file_path
        from states.config import data_dir

        file = data_dir() / row.file_path
        assert file.is_file()
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    gone = w.client.get(path)
    assert gone.status_code == 410 and "已过期" in gone.text
    assert not file.exists()
    assert w.client.get("/d/forged.token").status_code == 404


def test_the_deadline_sweep_deletes_expired_downloads_nobody_opened(world: World) -> None:
    from states.config import data_dir

    w = world
    resp = w.post("com_h1", f"/api/v1/campaigns/{w.campaign_id}/ledger", json={})
    job = _wait(w, "com_h1", resp.json()["id"])
    with Session(w.engine) as s:
        row = s.get(Job, job["id"])
        assert row is not None and row.file_path
        file = data_dir() / row.file_path
        assert file.is_file()
    report = jobs.sweep(w.engine, "deadline_sweep", utcnow())
    assert file.is_file() and "export_files_removed" not in report.counts  # not yet expired
    with Session(w.engine) as s:
        s.execute(update(Job).values(expires_at=utcnow() - timedelta(seconds=1)))
        s.commit()
    report = jobs.sweep(w.engine, "deadline_sweep", utcnow())
    assert report.counts["export_files_removed"] == 1 and not file.exists()
    with Session(w.engine) as s:
        assert s.get(Job, job["id"]).file_path is None  # type: ignore[union-attr]


def test_a_job_whose_process_stopped_is_marked_failed(world: World) -> None:
    w = world
    with Session(w.engine) as s:
        stale = Job(
            kind="ledger",
            requested_by=w.actors["com_h1"].user_id,
            status="running",
            heartbeat_at=utcnow() - timedelta(minutes=11),
        )
        s.add(stale)
        s.commit()
        job_id = stale.id
    body = w.get("com_h1", f"/api/v1/jobs/{job_id}").json()
    assert body["status"] == "failed" and body["error"] == INTERRUPTED
    assert body["download_url"] is None


def test_one_sheet_per_branch_is_refused_over_the_limit(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from states.ledger import committee

    monkeypatch.setattr(committee, "MAX_BRANCH_SHEETS", 2)
    w = world
    resp = w.post(
        "com_h1",
        f"/api/v1/campaigns/{w.campaign_id}/ledger",
        json={"org_id": w.orgs["H1"].id, "per_branch": True},
    )
    assert resp.status_code == 422 and resp.json()["details"]["field"] == "per_branch"


def test_the_pages_export_a_run_and_a_campaign(world: World) -> None:
    w = world
    _walk_s1(w)
    sec = web_user(w.client.app, "sec_s1")
    assert f'href="/runs/{w.runs["S1"]}/ledger.xlsx"' in sec.get(f"/runs/{w.runs['S1']}").text
    got = sec.get(f"/runs/{w.runs['S1']}/ledger.xlsx")
    assert got.status_code == 200 and _book(got.content).sheetnames[0] == "封面"
    assert (
        web_user(w.client.app, "sec_s2").get(f"/runs/{w.runs['S1']}/ledger.xlsx").status_code == 404
    )
    com = web_user(w.client.app, "com_h1")
    dashboard = com.get(f"/campaigns/{w.campaign_id}?org={w.orgs['H1'].id}").text
    assert f'action="/campaigns/{w.campaign_id}/ledger"' in dashboard
    assert f'name="org_id" value="{w.orgs["H1"].id}"' in dashboard
    started = com.post(f"/campaigns/{w.campaign_id}/ledger", {"org_id": str(w.orgs["H1"].id)})
    assert started.status_code == 303, started.text[:300]
    page_url = started.headers["location"]
    assert page_url.startswith("/jobs/")
    for _ in range(200):
        page = com.get(page_url)
        if "下载" in page.text:
            break
        assert 'http-equiv="refresh"' in page.text
        time.sleep(0.05)
    assert "/d/" in page.text and 'http-equiv="refresh"' not in page.text
    assert web_user(w.client.app, "com_g1").get(page_url).status_code == 404


def _cli(w: World, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    monkeypatch.setenv("DATABASE_URL", str(w.engine.url.render_as_string(hide_password=False)))
    return CliRunner().invoke(main, ["export", "ledger", *args], catch_exceptions=False)


def test_the_command_line_writes_both_workbooks(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    w = world
    walked = _walk_s1(w)
    out = tmp_path / "s1.xlsx"
    done = _cli(w, monkeypatch, "--run", str(w.runs["S1"]), "-o", str(out))
    assert done.exit_code == 0, done.output
    cover = {r[0]: r[1] for r in _values(openpyxl.load_workbook(out)["封面"]) if r[0]}
    assert cover["审计链末条哈希"] == walked["hash"]
    out = tmp_path / "g1.xlsx"
    done = _cli(w, monkeypatch, "--campaign", str(w.campaign_id), "--org", "G1", "-o", str(out))
    assert done.exit_code == 0, done.output
    assert "已处理 2 / 2" in done.stderr
    codes = [r[1] for r in _values(openpyxl.load_workbook(out)["汇总"])[2:]]
    assert codes == ["S1", "S2"]
    bad = _cli(w, monkeypatch, "--campaign", str(w.campaign_id), "--org", "NOPE", "-o", str(out))
    assert bad.exit_code != 0 and "NOPE" in bad.stderr


def _many_branches(w: World, n: int) -> None:
    """`n` more branches under G1, each with a run of the world's campaign (set-wise inserts)."""
    g1 = w.orgs["G1"]
    now = utcnow()
    orgs = [
        {
            "code": f"X{i:05d}",
            "name": f"第{i}党支部",
            "kind": "党支部",
            "parent_id": g1.id,
            "path": f"{g1.path}X{i:05d}/",
            "depth": g1.depth + 1,
            "member_count": 3,
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    org_table = Organisation.__table__  # type: ignore[attr-defined]
    run_table = Run.__table__  # type: ignore[attr-defined]
    with w.engine.begin() as conn:
        conn.execute(insert(org_table), orgs)
        ids = conn.execute(
            select(Organisation.id).where(col(Organisation.code).like("X%"))
        ).scalars()
        rows = [
            {"campaign_id": w.campaign_id, "org_id": i, "stage": "mobilize", "entered_at": now}
            for i in ids
        ]
        conn.execute(insert(run_table), rows)


def test_the_committee_export_over_2000_runs_streams(world: World) -> None:
    """Peak memory of the export, measured in a fresh process (reported, not timed)."""
    from bench.ledger import measure

    w = world
    _many_branches(w, 2000)
    url = w.engine.url.render_as_string(hide_password=False)
    result = measure(url, w.campaign_id, w.orgs["B"].id or 0)
    print(f"\ncommittee ledger, {result['runs']} runs ({w.engine.dialect.name}): {result}")
    assert result["runs"] == 2004
    # Streamed: the export adds little to what the interpreter and its libraries already hold.
    assert result["peak_rss_mb"] - result["rss_before_mb"] < 64, result

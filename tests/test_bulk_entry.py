"""Bulk entry from the roster (SQLite and PostgreSQL): commitments of every member in one form,
paste and sheet upload, attendance ticked; all-or-nothing with errors shown beside the member.

The pages are driven through the log-in form (`web_user`), as a secretary meets them; the
parsing of pasted text is tested on its own too (`states.evidence.bulk`).
"""

from __future__ import annotations

import io
import re
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from sqlmodel import Session, col, select

from states import runs
from states.evidence import bulk
from states.evidence.records import record_batch
from states.members.models import Member
from states.models import Evidence, EvidenceLink, Run
from states.users import actor_by_username
from tests.api_world import World
from tests.browser import web_user
from tests.test_api_matrix import snapshot

NAMES = ("张某", "李某", "<script>alert(1)</script>")


def add_members(w: World, code: str, names: tuple[str, ...] = NAMES) -> dict[str, int]:
    """Put `names` on the roster of branch `code` (在册), plus one transferred member."""
    org = w.orgs[code]
    with Session(w.engine) as s:
        rows = [
            Member(org_id=org.id or 0, name=n, category="正式党员", joined_on=date(2010, 7, 1))
            for n in names
        ]
        rows.append(
            Member(
                org_id=org.id or 0,
                name="已转出党员",
                category="正式党员",
                joined_on=date(2009, 7, 1),
                status="转出",
                status_on=date(2025, 1, 1),
            )
        )
        s.add_all(rows)
        s.commit()
        return {m.name: m.id or 0 for m in rows if m.status == "在册"}


def set_stage(w: World, code: str, stage: str) -> int:
    run_id = w.runs[code]
    with Session(w.engine) as s:
        run = s.get(Run, run_id)
        assert run is not None
        run.stage = stage
        s.add(run)
        s.commit()
    return run_id


@pytest.fixture
def pledge(world: World) -> tuple[World, int, dict[str, int]]:
    """S1 in 公开承诺 with three 在册 members (one named like a script tag)."""
    ids = add_members(world, "S1")
    return world, set_stage(world, "S1", "pledge"), ids


def commitments(w: World, run_id: int) -> list[dict[str, Any]]:
    with Session(w.engine) as s:
        rows = s.execute(
            select(Evidence.data)
            .join(EvidenceLink, col(EvidenceLink.evidence_id) == col(Evidence.id))
            .where(EvidenceLink.run_id == run_id, Evidence.kind == "commitment")
            .order_by(col(Evidence.id))
        ).scalars()
        return [dict(d) for d in rows]


def commitment_status(w: World, run_id: int) -> Any:
    with Session(w.engine) as s:
        ctx = runs.load_run(s, run_id, None)
        return next(c for c in runs.checklist(s, ctx) if c.key == "commitment_share")


def row_html(html: str, field: str) -> str:
    found = re.search(
        rf'id="row-{field}".*?(?=<div class="field bulk-row|<div class="actions")', html, re.S
    )
    assert found, field
    return found.group(0)


# --------------------------------------------------------------------------- the form


def test_the_form_lists_every_active_member_and_recorded_ones_read_only(pledge: Any) -> None:
    w, run_id, ids = pledge
    with Session(w.engine) as s:
        record_batch(
            s,
            run_id=run_id,
            actor=w.actors["sec_s1"],
            items=[("commitment", {"member_id": ids["张某"], "text": "带头学习"})],
        )
        s.commit()
    sec = web_user(w.client.app, "sec_s1")
    html = sec.get(f"/runs/{run_id}/commitments").text
    assert "已转出党员" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert" not in html
    assert f'name="m{ids["张某"]}"' not in html and "带头学习" in row_html(html, f"m{ids['张某']}")
    assert f'name="m{ids["李某"]}"' in html and 'name="branch"' in html
    run_page = sec.get(f"/runs/{run_id}").text
    assert f'href="/runs/{run_id}/commitments"' in run_page


def test_one_submit_writes_one_record_per_member_and_the_guard_passes(pledge: Any) -> None:
    w, run_id, ids = pledge
    sec = web_user(w.client.app, "sec_s1")
    assert not commitment_status(w, run_id).met
    form = {f"m{i}": f"承诺{n}" for n, i in enumerate(ids.values())}
    resp = sec.post(f"/runs/{run_id}/commitments", {**form, "branch": "支部承诺", "action": "save"})
    assert resp.status_code == 303, resp.text[:500]
    saved = commitments(w, run_id)
    assert sorted(d["member_id"] for d in saved if "member_id" in d) == sorted(ids.values())
    assert [d["text"] for d in saved if d.get("member_id") is None] == ["支部承诺"]
    assert commitment_status(w, run_id).met
    # The page now shows every row read-only; nothing left to type.
    html = sec.get(f"/runs/{run_id}/commitments").text
    assert '<textarea id="m' not in html and "已录入 4 条" in html
    # The run page and its history name the members, never `member:12`.
    run_page = sec.get(f"/runs/{run_id}").text
    assert "张某的承诺" in run_page and "李某的承诺" in run_page
    assert "录入材料：承诺（张某）" in run_page and "member:" not in run_page


def test_one_bad_row_writes_nothing_and_shows_the_error_by_the_member(pledge: Any) -> None:
    w, run_id, ids = pledge
    sec = web_user(w.client.app, "sec_s1")
    before = snapshot(w.engine)
    bad = ids["李某"]
    form = {f"m{ids['张某']}": "带头学习", f"m{bad}": "长" * 2001, "action": "save"}
    resp = sec.post(f"/runs/{run_id}/commitments", form)
    assert resp.status_code == 422
    assert "最多 2000 字" in row_html(resp.text, f"m{bad}")
    assert "带头学习" in row_html(resp.text, f"m{ids['张某']}")  # what was typed stays
    assert snapshot(w.engine) == before


def test_a_refused_batch_item_is_shown_by_its_member_and_nothing_is_written(
    pledge: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`record_batch` names the bad item: the page puts its message beside that member."""
    w, run_id, _ = pledge
    from api.web import bulk as page
    from states.errors import InvalidInput

    def refuse(*_: Any, **kw: Any) -> None:
        raise InvalidInput(
            "有 1 项材料有误（第 2 项），均未保存",
            details=[{"item": 1, "field": "member_id", "message": "党员不在本支部名册（在册）中"}],
        )

    monkeypatch.setattr(page, "record_batch", refuse)
    sec = web_user(w.client.app, "sec_s1")
    order = [
        int(i) for i in re.findall(r'id="row-m(\d+)"', sec.get(f"/runs/{run_id}/commitments").text)
    ]
    form = {f"m{i}": f"承诺{i}" for i in order}
    resp = sec.post(f"/runs/{run_id}/commitments", {**form, "action": "save"})
    assert resp.status_code == 422 and "未保存任何承诺" in resp.text
    flagged = [i for i in order if "field-error" in row_html(resp.text, f"m{i}")]
    assert flagged == [order[1]]
    assert "不在本支部名册" in row_html(resp.text, f"m{order[1]}")
    assert all(f"承诺{i}</textarea>" in resp.text for i in order)
    assert commitments(w, run_id) == []


def test_an_empty_form_and_a_stage_without_commitments_are_refused(pledge: Any) -> None:
    w, run_id, _ = pledge
    sec = web_user(w.client.app, "sec_s1")
    resp = sec.post(f"/runs/{run_id}/commitments", {"action": "save"})
    assert resp.status_code == 422 and "请至少填写一条承诺" in resp.text
    set_stage(w, "S1", "review")
    assert sec.get(f"/runs/{run_id}/commitments").status_code == 409
    assert sec.get(f"/runs/{run_id}/meeting").status_code == 409


def test_out_of_reach_is_the_404_page_and_readers_without_the_right_get_403(pledge: Any) -> None:
    w, run_id, _ = pledge
    for url in (f"/runs/{run_id}/commitments", f"/runs/{run_id}/meeting"):
        resp = web_user(w.client.app, "sec_s4").get(url)
        assert resp.status_code == 404 and "页面不存在" in resp.text
    assert web_user(w.client.app, "sec_s2").get(f"/runs/{run_id}/commitments").status_code == 404
    sibling = web_user(w.client.app, "admin_h2")
    before = snapshot(w.engine)
    form = {"action": "save", "branch": "越权承诺", "title": "会", "date": "2026-11-20"}
    for url in (f"/runs/{run_id}/commitments", f"/runs/{run_id}/meeting"):
        resp = sibling.post(url, form)
        assert resp.status_code == 404 and "页面不存在" in resp.text
    assert snapshot(w.engine) == before


# --------------------------------------------------------------------------- paste


def roster(**names: int) -> list[bulk.RosterEntry]:
    return [bulk.RosterEntry(i, n) for n, i in names.items()]


def test_paste_reads_tabs_commas_blank_lines_and_a_header() -> None:
    rows, errors = bulk.parse_paste('姓名\t承诺\n张某\t带头学习\n\n李某\t"两行\n承诺"\n王某\n')
    assert [(r.row, r.name, r.text) for r in rows] == [
        (2, "张某", "带头学习"),
        (4, "李某", "两行 承诺"),
    ]
    assert [(e.row, e.name) for e in errors] == [(6, "王某")] and "缺少承诺内容" in errors[
        0
    ].message
    rows, errors = bulk.parse_paste("张某,带头学习，做好本职\r\n\r\n李某，服务群众, 办实事\n")
    assert [(r.row, r.name, r.text) for r in rows] == [
        (1, "张某", "带头学习，做好本职"),
        (3, "李某", "服务群众, 办实事"),
    ]
    assert errors == []
    rows, errors = bulk.parse_paste("\tno name\n张某\t" + "长" * 2001)
    assert rows == [] and [e.row for e in errors] == [1, 2]


def test_paste_matching_names_unknown_doubled_and_repeated_rows() -> None:
    members = [*roster(张某=1, 李某=2), bulk.RosterEntry(3, "王某"), bulk.RosterEntry(4, "王某")]
    rows, _ = bulk.parse_paste("张某\ta\n赵某\tb\n王某\tc\n张某\td\n支部\te\n")
    texts, errors = bulk.match_roster(rows, members)
    assert texts == {1: "a", bulk.BRANCH: "e"}
    messages = {e.row: e.message for e in errors}
    assert "名册中没有「赵某」" in messages[2]
    assert "名册中有 2 名「王某」" in messages[3]
    assert "重复（第 1 行已填写）" in messages[4]
    assert bulk.duplicate_names(members) == {"王某"}


def test_pasting_fills_the_boxes_for_checking_and_saves_nothing(pledge: Any) -> None:
    w, run_id, ids = pledge
    sec = web_user(w.client.app, "sec_s1")
    before = snapshot(w.engine)
    resp = sec.post(
        f"/runs/{run_id}/commitments",
        {"action": "paste", "paste": "张某\t做好本职\n李某\t服务群众\n"},
    )
    assert resp.status_code == 200 and "已填入 2 名党员的承诺" in resp.text
    assert "做好本职</textarea>" in row_html(resp.text, f"m{ids['张某']}")
    assert snapshot(w.engine) == before
    bad = sec.post(
        f"/runs/{run_id}/commitments",
        {
            "action": "paste",
            "paste": "张某\t做好本职\n赵某\t服务群众\n",
            f"m{ids['李某']}": "已输入",
        },
    )
    assert bad.status_code == 422 and "第 2 行：名册中没有「赵某」" in bad.text
    assert "已输入</textarea>" in row_html(bad.text, f"m{ids['李某']}")  # typed boxes stay
    assert "赵某\t服务群众" in bad.text  # the pasted text stays for fixing
    assert snapshot(w.engine) == before


# --------------------------------------------------------------------------- sheets


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    return buf.getvalue()


def upload(sec: Any, run_id: int, name: str, content: bytes) -> Any:
    return sec.post(
        f"/runs/{run_id}/commitments",
        {"action": "upload"},
        files={"file": (name, content, "application/octet-stream")},
    )


def test_an_uploaded_sheet_fills_the_boxes(pledge: Any) -> None:
    w, run_id, ids = pledge
    sec = web_user(w.client.app, "sec_s1")
    resp = upload(sec, run_id, "承诺.xlsx", xlsx_bytes([["姓名", "承诺"], ["李某", "服务群众"]]))
    assert resp.status_code == 200, resp.text[:400]
    assert "服务群众</textarea>" in row_html(resp.text, f"m{ids['李某']}")
    csv = "name,text\r\n张某,带头学习\r\n".encode("utf-8-sig")
    resp = upload(sec, run_id, "c.csv", csv)
    assert resp.status_code == 200 and "带头学习</textarea>" in resp.text
    resp = upload(sec, run_id, "c.csv", "编号,内容\n1,x\n".encode())
    assert resp.status_code == 422 and "须包含「姓名」和「承诺」两列" in resp.text
    assert commitments(w, run_id) == []


def zip_bomb() -> bytes:
    buf = io.BytesIO()
    book = zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9)
    with book, book.open("xl/worksheets/sheet1.xml", "w") as entry:
        for _ in range(20):
            entry.write(b"\0" * (1 << 20))
    return buf.getvalue()


def test_hostile_files_get_a_clear_4xx_and_write_nothing(pledge: Any, tmp_path: Path) -> None:
    w, run_id, _ = pledge
    sec = web_user(w.client.app, "sec_s1")
    before = snapshot(w.engine)
    bomb = upload(sec, run_id, "承诺.xlsx", zip_bomb())
    assert bomb.status_code in (413, 422) and 'id="file-error"' in bomb.text, bomb.text[:400]
    exe = upload(sec, run_id, "承诺.xlsx", b"MZ\x90\x00" + b"\0" * 200)
    assert exe.status_code == 422 and 'id="file-error"' in exe.text
    big = upload(sec, run_id, "承诺.csv", b"a,b\n" + b"x" * (10 * 1024 * 1024 + 10))
    assert big.status_code == 413 and "文件过大" in big.text
    other = upload(sec, run_id, "承诺.exe", b"MZ")
    assert other.status_code == 422 and "不支持的文件类型" in other.text
    assert snapshot(w.engine) == before


# --------------------------------------------------------------------------- attendance


def test_attendance_ticked_from_the_roster_is_stored_with_counts(world: World) -> None:
    w = world
    ids = add_members(w, "S1")
    run_id = w.runs["S1"]  # 宣传发动 takes meetings
    sec = web_user(w.client.app, "sec_s1")
    html = sec.get(f"/runs/{run_id}/meeting").text
    assert html.count('name="present"') == 3 and html.count("checked") == 3
    assert "&lt;script&gt;" in html and "已转出党员" not in html
    absent = ids["李某"]
    present = [i for i in ids.values() if i != absent]
    form: dict[str, Any] = {
        "title": "动员大会",
        "date": "2026-11-20",
        "present": [str(i) for i in present],
        f"r{absent}": "请假",
        f"r{present[0]}": "（勾选出席时不保存）",
    }
    resp = sec.post(f"/runs/{run_id}/meeting", form)
    assert resp.status_code == 303, resp.text[:500]
    with Session(w.engine) as s:
        ev = s.execute(select(Evidence).where(Evidence.kind == "meeting")).scalar_one()
    assert sorted(ev.data["attendees"]) == sorted(present)
    assert ev.data["absences"] == [{"member_id": absent, "reason": "请假"}]
    assert ev.data["expected"] == 3 and ev.data["present"] == 2
    page = sec.get(f"/runs/{run_id}").text
    assert "缺席" in page and "李某（请假）" in page and "张某" in page
    with Session(w.engine) as s:
        ctx = runs.load_run(s, run_id, None)
        assert any(c.met for c in runs.checklist(s, ctx) if "meeting" in c.key)


def test_attendance_errors_keep_the_ticks_and_write_nothing(world: World) -> None:
    w = world
    ids = add_members(w, "S1")
    run_id = w.runs["S1"]
    sec = web_user(w.client.app, "sec_s1")
    before = snapshot(w.engine)
    absent = ids["张某"]
    form: dict[str, Any] = {
        "title": "",
        "date": "2026-13-01",
        "present": [str(i) for i in ids.values() if i != absent],
        f"r{absent}": "因" * 51,
    }
    resp = sec.post(f"/runs/{run_id}/meeting", form)
    assert resp.status_code == 422
    assert "请填写会议名称" in resp.text and "须为日期" in resp.text
    row = re.search(rf'<li id="att-{absent}".*?</li>', resp.text, re.S)
    assert row and "缺席原因最多 50 字" in row.group(0) and "checked" not in row.group(0)
    assert resp.text.count("checked") == 2
    assert snapshot(w.engine) == before


def test_a_branch_without_a_roster_is_sent_to_the_number_form(world: World) -> None:
    w = world
    run_id = w.runs["S1"]
    sec = web_user(w.client.app, "sec_s1")
    html = sec.get(f"/runs/{run_id}/meeting").text
    assert "尚未导入党员名册" in html and 'id="meeting-form"' not in html


def test_a_secretary_cannot_take_a_superiors_review_off_the_stage(world: World) -> None:
    """The run page offers 不计入本阶段 only for kinds the reader may record, and the action
    refuses the rest: a branch cannot make its superior's review stop counting."""
    w = world
    run_id = set_stage(w, "S1", "review")
    with Session(w.engine) as s:
        reviewer = actor_by_username(s, "com_g1")
        review = {"achievements": "成绩", "problems": "问题", "direction": "方向"}
        ev = runs.record_evidence(s, run_id=run_id, actor=reviewer, kind="review", data=review)
        s.commit()
        ev_id = ev.id
    sec = web_user(w.client.app, "sec_s1")
    page = sec.get(f"/runs/{run_id}").text
    assert f'name="evidence_id" value="{ev_id}"' not in page
    resp = sec.post(f"/runs/{run_id}/unlink", {"evidence_id": str(ev_id)})
    assert resp.status_code == 403
    with Session(w.engine) as s:
        assert s.execute(select(EvidenceLink).where(EvidenceLink.evidence_id == ev_id)).first()
    committee = web_user(w.client.app, "com_g1")
    assert f'name="evidence_id" value="{ev_id}"' in committee.get(f"/runs/{run_id}").text

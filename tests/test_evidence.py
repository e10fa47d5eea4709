"""Evidence on SQLite and PostgreSQL: records owned by the organisation and linked to many runs,
batches, roster commitments and attendance, corrections, content hashes, grades decided above."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select, text
from sqlmodel import Session

from states import audit, runs
from states.campaigns import launch_campaign
from states.errors import Conflict, Forbidden, InvalidInput, NotFound, RequirementsUnmet
from states.evidence import corrections, queries, records
from states.members.models import Member
from states.models import AuditEvent, Evidence, EvidenceLink, EvidenceRevision, Role, Run
from tests.api_world import MEETING as MEETING_API
from tests.api_world import World as ApiWorld
from tests.factories import MEETING, make_user
from tests.test_runs import World


class Two(World):
    """The runs World with a second campaign over the same tree (another year's campaign)."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.second = launch_campaign(
            session,
            template_key="chuangxian_zhengyou",
            root_code="B",
            actor=self.organiser,
            name="第二轮创先争优",
        )
        session.commit()

    def run2(self, code: str) -> int:
        return int(
            self.s.execute(
                select(Run.id).where(
                    Run.org_id == self.orgs[code].id, Run.campaign_id == self.second.id
                )
            ).scalar_one()
        )

    def roster(self, code: str, *names: str) -> list[int]:
        org = self.orgs[code]
        rows = [
            Member(org_id=org.id or 0, name=n, category="正式党员", joined_on=date(2010, 7, 1))
            for n in names
        ]
        self.s.add_all(rows)
        self.s.commit()
        return [m.id or 0 for m in rows]

    def met(self, run_id: int) -> list[bool]:
        return [c.met for c in runs.checklist(self.s, runs.load_run(self.s, run_id, None))]

    def reasons(self, run_id: int) -> list[str]:
        ctx = runs.load_run(self.s, run_id, None)
        return [c.reason for c in runs.checklist(self.s, ctx) if not c.met]


@pytest.fixture
def w(session: Session) -> Two:
    return Two(session)


def _count(s: Session, model: type) -> int:
    return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def test_one_meeting_counts_for_two_campaigns(w: Two) -> None:
    first, second = w.run("S1").id or 0, w.run2("S1")
    ev = w.do(records.record, run_id=first, actor=w.sec1, kind="meeting", data=MEETING)
    assert w.met(first) == [True] and w.met(second) == [False]
    assert [e.id for e in queries.reusable(w.s, second, w.sec1)] == [ev.id]
    w.do(records.link, run_id=second, actor=w.sec1, evidence_id=ev.id)
    assert w.met(second) == [True]
    assert queries.reusable(w.s, second, w.sec1) == []
    with pytest.raises(Conflict) as err:
        w.do(records.link, run_id=second, actor=w.sec1, evidence_id=ev.id)
    assert err.value.details["rule"] == "already_linked"
    for run_id in (first, second):
        w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    actions = [e.action for e in runs.history(w.s, second, w.sec1)[0]]
    assert "evidence.linked" in actions
    assert _count(w.s, Evidence) == 1 and _count(w.s, EvidenceLink) == 2


def test_unlink_is_audited_and_the_guard_fails_again(w: Two) -> None:
    first, second = w.run("S1").id or 0, w.run2("S1")
    ev = w.do(records.record, run_id=first, actor=w.sec1, kind="meeting", data=MEETING)
    w.do(records.link, run_id=second, actor=w.sec1, evidence_id=ev.id)
    w.do(records.unlink, run_id=second, actor=w.sec1, evidence_id=ev.id)
    assert w.met(second) == [False] and w.met(first) == [True]
    assert runs.history(w.s, second, w.sec1)[0][0].action == "evidence.unlinked"


def test_link_outside_reach_is_404_and_another_branch_409(w: Two) -> None:
    ev = w.do(
        records.record, run_id=w.run("S1").id or 0, actor=w.sec1, kind="meeting", data=MEETING
    )
    with pytest.raises(NotFound):  # S4 is in the sibling subtree
        w.do(records.link, run_id=w.run2("S4"), actor=w.sec4, evidence_id=ev.id)
    with pytest.raises(NotFound):  # S1's secretary cannot reach S2's run
        w.do(records.link, run_id=w.run2("S2"), actor=w.sec1, evidence_id=ev.id)
    with pytest.raises(Conflict) as err:  # the committee above reaches both: not S2's record
        w.do(records.link, run_id=w.run2("S2"), actor=w.g1, evidence_id=ev.id)
    assert err.value.details["rule"] == "other_organisation"
    with pytest.raises(NotFound):
        w.do(corrections.void, evidence_id=ev.id, actor=w.sec4, reason="误录")
    with pytest.raises(NotFound):
        queries.record_view(w.s, ev.id or 0, w.h2)
    assert _count(w.s, EvidenceLink) == 1


def test_void_makes_the_guard_fail_again_with_its_reason(w: Two) -> None:
    run_id = w.run("S1").id or 0
    ev = w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    with pytest.raises(InvalidInput):
        w.do(corrections.void, evidence_id=ev.id, actor=w.sec1, reason="  ")
    supervisor = make_user(w.s, "sup", ("G1", Role.SUPERVISOR))
    with pytest.raises(Forbidden):  # reaches it, but neither recorded it nor corrects above
        w.do(corrections.void, evidence_id=ev.id, actor=supervisor, reason="误录")
    w.do(corrections.void, evidence_id=ev.id, actor=w.sec1, reason="会议日期记错")
    assert w.met(run_id) == [False]
    with pytest.raises(RequirementsUnmet) as err:
        w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    assert "宣传发动" in err.value.message
    with pytest.raises(Conflict):
        w.do(corrections.void, evidence_id=ev.id, actor=w.g1, reason="再次作废")
    last = runs.history(w.s, run_id, w.sec1)[0][0]
    assert last.action == "evidence.voided" and last.data["reason"] == "会议日期记错"
    assert queries.reusable(w.s, w.run2("S1"), w.sec1) == []


def test_amend_keeps_the_old_contents_until_the_stage_closes(w: Two) -> None:
    run_id = w.run("S1").id or 0
    ev = w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    new = {**MEETING, "title": "动员大会（更正）"}
    w.do(corrections.amend, evidence_id=ev.id, actor=w.g1, data=new, reason="标题有误")
    view = queries.record_view(w.s, ev.id or 0, w.sec1)
    assert view.evidence.version == 2 and view.evidence.data["title"] == "动员大会（更正）"
    assert [(r.version, r.data["title"], r.reason) for r in view.revisions] == [
        (1, "动员大会", "标题有误")
    ]
    event = runs.history(w.s, run_id, w.sec1)[0][0]
    assert event.action == "evidence.amended"
    assert event.data["before"]["data"]["title"] == "动员大会"
    assert event.data["after"]["data"]["title"] == "动员大会（更正）"
    with pytest.raises(InvalidInput):
        w.do(corrections.amend, evidence_id=ev.id, actor=w.sec1, data=new)  # no change
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=req.id, actor=w.g1)
    with pytest.raises(Conflict) as err:
        w.do(corrections.amend, evidence_id=ev.id, actor=w.sec1, data=MEETING)
    assert err.value.details["rule"] == "use_closed" and "宣传发动" in err.value.message
    with pytest.raises(Conflict):
        w.do(corrections.void, evidence_id=ev.id, actor=w.sec1, reason="晚了")
    assert _count(w.s, EvidenceRevision) == 1


def test_editing_evidence_in_the_database_is_named_by_verify(w: Two) -> None:
    run_id = w.run("S1").id or 0
    ev = w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    w.do(corrections.amend, evidence_id=ev.id, actor=w.sec1, data={**MEETING, "present": 2})
    other = w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    w.do(corrections.void, evidence_id=other.id, actor=w.sec1, reason="重复")
    report = audit.verify(w.s)
    assert report.ok and report.records == 2 and report.tampered == ()
    w.s.execute(
        text("UPDATE evidence SET data = :d WHERE id = :i"),
        {
            "d": '{"date": "2026-03-01", "title": "动员大会", "expected": 3, "present": 3}',
            "i": ev.id,
        },
    )
    w.s.commit()
    report = audit.verify(w.s)
    assert not report.ok and report.tampered == (ev.id,)
    assert (
        report.broken is not None and f"材料 #{ev.id} 的内容与审计记录不符" in report.broken.reason
    )
    w.s.execute(text("UPDATE evidence SET status = 'active' WHERE id = :i"), {"i": other.id})
    w.s.commit()
    assert audit.verify(w.s).tampered == (ev.id, other.id)


def test_batch_is_all_or_nothing_with_every_bad_item_named(w: Two) -> None:
    run_id = w.run("S1").id or 0
    w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=req.id, actor=w.g1)
    before = _count(w.s, Evidence), _count(w.s, AuditEvent)
    items = [("commitment", {"member": f"党员{i}", "text": "带头学习"}) for i in range(3)]
    bad = [*items, ("commitment", {"member": "党员9"}), ("meeting", MEETING)]
    with pytest.raises(InvalidInput) as err:
        w.do(records.record_batch, run_id=run_id, actor=w.sec1, items=bad)
    details = err.value.details
    assert {(d["item"], d["field"]) for d in details} == {(3, "text"), (4, "kind")}
    assert (_count(w.s, Evidence), _count(w.s, AuditEvent)) == before
    evs = w.do(
        records.record_batch,
        run_id=run_id,
        actor=w.sec1,
        items=[*items, ("commitment", {"text": "支部承诺"})],
    )
    assert len(evs) == 4 and len({e.id for e in evs}) == 4
    assert audit.verify(w.s).ok
    supervisor = make_user(w.s, "sup", ("G1", Role.SUPERVISOR))
    with pytest.raises(Forbidden):  # one who may only read: the whole batch is refused
        w.do(records.record_batch, run_id=run_id, actor=supervisor, items=items)
    with pytest.raises(NotFound):  # another branch's secretary
        w.do(records.record_batch, run_id=w.run("S2").id or 0, actor=w.sec1, items=items)


def _to_pledge(w: Two, run_id: int) -> None:
    w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=req.id, actor=w.g1)


def test_roster_commitments_name_who_is_missing(w: Two) -> None:
    ids = w.roster("S1", "党员A", "党员B", "党员C", "党员D")
    run_id = w.run("S1").id or 0
    _to_pledge(w, run_id)
    w.do(
        records.record,
        run_id=run_id,
        actor=w.sec1,
        kind="commitment",
        data={"member_id": ids[0], "text": "带头学习"},
    )
    reasons = w.reasons(run_id)
    assert reasons[0].startswith("公开承诺：尚有 3 名党员未提交承诺：党员B、党员C、党员D")
    with pytest.raises(InvalidInput) as err:  # a member of another branch's roster
        other = w.roster("S2", "戊党员")[0]
        w.do(
            records.record,
            run_id=run_id,
            actor=w.sec1,
            kind="commitment",
            data={"member_id": other, "text": "x"},
        )
    assert err.value.details[0]["field"] == "member_id"
    with pytest.raises(InvalidInput):  # with a roster, a typed name is refused
        w.do(
            records.record,
            run_id=run_id,
            actor=w.sec1,
            kind="commitment",
            data={"member": "某人", "text": "x"},
        )
    w.do(
        records.record_batch,
        run_id=run_id,
        actor=w.sec1,
        items=[("commitment", {"member_id": i, "text": "立足岗位"}) for i in ids[1:]],
    )
    assert not any("尚有" in r for r in w.reasons(run_id))


def test_many_missing_members_are_cut_after_ten(w: Two) -> None:
    w.roster("S1", *[f"党员{i:02d}" for i in range(14)])
    run_id = w.run("S1").id or 0
    _to_pledge(w, run_id)
    first = w.reasons(run_id)[0]
    assert "尚有 14 名党员未提交承诺" in first and first.endswith(
        "党员09 等 14 人；公开承诺：支部承诺尚未提交"
    )


def test_attendance_is_ticked_from_the_roster(w: Two) -> None:
    ids = w.roster("S1", "甲党员", "乙党员", "丙党员")
    run_id = w.run("S1").id or 0
    data = {
        "date": "2026-03-01",
        "title": "支部党员大会",
        "attendees": ids[:2],
        "absences": [{"member_id": ids[2], "reason": "请假"}],
        "expected": 99,
    }
    ev = w.do(records.record, run_id=run_id, actor=w.sec1, kind="meeting", data=data)
    assert ev.data["expected"] == 3 and ev.data["present"] == 2
    assert ev.data["absences"] == [{"member_id": ids[2], "reason": "请假"}]
    with pytest.raises(InvalidInput):
        w.do(
            records.record,
            run_id=w.run("S2").id or 0,
            actor=w.sec2,
            kind="meeting",
            data={**data, "attendees": [ids[0]], "absences": []},
        )


def _to_commend(w: Two, run_id: int) -> None:
    while w.run("S1").stage != "commend":
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
        w.do(runs.approve, request_id=req.id, actor=w.g1)


def test_grades_are_decided_above(w: Two) -> None:
    run_id = w.run("S1").id or 0
    _to_commend(w, run_id)
    grade = {"grade": "好", "commendation": "先进基层党组织"}
    with pytest.raises(Forbidden) as err:
        w.do(records.record, run_id=run_id, actor=w.sec1, kind="decision", data=grade)
    assert err.value.details["rule"] == "decided_above"
    with pytest.raises(Forbidden) as err:  # S1's secretary sits on the committee above too
        w.do(records.record, run_id=run_id, actor=w.dual, kind="decision", data=grade)
    assert err.value.details["rule"] == "own_branch"
    own = {"grade": "好", "text": "承诺全部兑现"}
    mine = w.do(records.record, run_id=run_id, actor=w.sec1, kind="self_assessment", data=own)
    assert mine.subject == "好" and not mine.on_behalf
    ev = w.do(records.record, run_id=run_id, actor=w.g1, kind="decision", data=grade)
    assert ev.recorder_org_id == w.orgs["G1"].id
    with pytest.raises(InvalidInput):
        w.do(
            records.record,
            run_id=run_id,
            actor=w.sec1,
            kind="self_assessment",
            data={"grade": "优"},
        )


# --- over HTTP -----------------------------------------------------------------------------


def _api_count(w: ApiWorld, model: type) -> int:
    with Session(w.engine) as s:
        return _count(s, model)


def test_api_batch_names_the_bad_item_and_writes_nothing(world: ApiWorld) -> None:
    w = world
    url = f"/api/v1/runs/{w.runs['S1']}/evidence/batch"
    good = {"kind": "meeting", "data": MEETING_API}
    resp = w.post("sec_s1", url, json={"items": [good, {"kind": "meeting", "data": {}}]})
    assert resp.status_code == 422, resp.text
    assert any("items" in str(d) and "1" in str(d) for d in resp.json()["details"])
    resp = w.post(
        "sec_s1", url, json={"items": [good, {"kind": "decision", "data": {"grade": "好"}}]}
    )
    assert resp.status_code == 422 and resp.json()["details"][0]["item"] == 1, resp.text
    assert _api_count(w, Evidence) == 0
    resp = w.post(
        "sec_s1",
        url,
        json={"items": [good, {**good, "data": {**MEETING_API, "title": "<script>x</script>"}}]},
    )
    assert resp.status_code == 201, resp.text
    ids = resp.json()["ids"]
    assert len(ids) == 2 and _api_count(w, Evidence) == 2
    too_many = {"items": [good] * 501}
    assert w.post("sec_s1", url, json=too_many).status_code == 422


def test_api_link_void_amend_and_read(world: ApiWorld) -> None:
    w = world
    run = w.runs["S1"]
    ev = w.post(
        "sec_s1", f"/api/v1/runs/{run}/evidence", json={"kind": "meeting", "data": MEETING_API}
    )
    assert ev.status_code == 201, ev.text
    ev_id = ev.json()["id"]
    assert ev.json()["org_id"] == w.orgs["S1"].id and ev.json()["status"] == "active"
    again = w.post("sec_s1", f"/api/v1/runs/{run}/evidence/link", json={"evidence_id": ev_id})
    assert again.status_code == 409 and again.json()["details"]["rule"] == "already_linked"
    # The sibling subtree: neither the record nor its use exists for it.
    assert w.get("admin_h2", f"/api/v1/evidence/{ev_id}").status_code == 404
    s4 = w.runs["S4"]
    resp = w.post("admin_h2", f"/api/v1/runs/{s4}/evidence/link", json={"evidence_id": ev_id})
    assert resp.status_code == 404, resp.text
    patch = {"data": {**MEETING_API, "present": 2}, "reason": "实到人数更正"}
    resp = w.client.patch(f"/api/v1/evidence/{ev_id}", json=patch, headers=w.as_("sec_s1"))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["version"] == 2 and body["revisions"][0]["data"]["present"] == 3
    assert body["uses"][0]["run_id"] == run and body["uses"][0]["open"] is True
    bad = w.client.patch(
        f"/api/v1/evidence/{ev_id}", json={"data": {"title": ""}}, headers=w.as_("sec_s1")
    )
    assert bad.status_code == 422
    resp = w.post("sec_s1", f"/api/v1/evidence/{ev_id}/void", json={"reason": "重复录入"})
    assert resp.status_code == 200 and resp.json()["status"] == "void", resp.text
    run_page = w.get("sec_s1", f"/api/v1/runs/{run}").json()
    assert run_page["checklist"][0]["met"] is False
    history = w.get("sec_s1", f"/api/v1/runs/{run}/history").json()["items"]
    assert [h["action"] for h in history[:3]] == [
        "evidence.voided",
        "evidence.amended",
        "evidence.recorded",
    ]
    assert all(len(h["data"]["sha256"]) == 64 for h in history[:3])
    assert w.get("sec_s1", f"/api/v1/runs/{run}/evidence/reusable").json() == []


def test_api_branch_secretary_decision_is_403(world: ApiWorld) -> None:
    w = world
    with Session(w.engine, expire_on_commit=False) as s:
        run = s.get_one(Run, w.runs["S1"])
        run.stage = "commend"
        s.add(run)
        s.commit()
    url = f"/api/v1/runs/{w.runs['S1']}/evidence"
    decision = {"kind": "decision", "data": {"grade": "好"}}
    resp = w.post("sec_s1", url, json=decision)
    assert resp.status_code == 403 and resp.json()["details"]["rule"] == "decided_above"
    own = {"kind": "self_assessment", "data": {"grade": "好", "text": "承诺全部兑现"}}
    assert w.post("sec_s1", url, json=own).status_code == 201
    assert w.post("com_g1", url, json=decision).status_code == 201


# --- the pages -----------------------------------------------------------------------------


def test_pages_reuse_a_record_then_correct_and_void_it(world: ApiWorld) -> None:
    from tests.browser import web_user
    from tests.test_api_matrix import snapshot

    w = world
    with Session(w.engine, expire_on_commit=False) as s:
        second = launch_campaign(
            s,
            template_key="chuangxian_zhengyou",
            root_code="H1",
            actor=w.actors["org_h1"],
            name="第二轮",
        )
        s.commit()
        run2 = s.execute(
            select(Run.id).where(Run.campaign_id == second.id, Run.org_id == w.orgs["S1"].id)
        ).scalar_one()
        ev = records.record(
            s,
            run_id=w.runs["S1"],
            actor=w.actors["sec_s1"],
            kind="meeting",
            data={**MEETING_API, "title": "<script>alert(1)</script>"},
        )
        s.commit()
    sec = web_user(w.client.app, "sec_s1")
    page = sec.get(f"/runs/{run2}").text
    assert "使用已有记录" in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)" not in page
    resp = sec.post(f"/runs/{run2}/link", {"evidence_id": str(ev.id)})
    assert resp.status_code == 303, resp.text
    assert "使用此记录" not in sec.get(f"/runs/{run2}").text
    resp = sec.post(f"/runs/{run2}/link", {"evidence_id": str(ev.id)})
    assert resp.status_code == 409 and "已用于本阶段" in resp.text
    record = sec.get(f"/evidence/{ev.id}")
    assert record.status_code == 200 and "更正内容" in record.text and "作废" in record.text
    amend = {**{k: str(v) for k, v in MEETING_API.items()}, "present": "2", "reason": "更正人数"}
    resp = sec.post(f"/evidence/{ev.id}/amend", amend)
    assert resp.status_code == 303, resp.text
    text_ = sec.get(f"/evidence/{ev.id}").text
    assert "第 1 版（被更正前的内容）" in text_ and "更正人数" in text_
    resp = sec.post(f"/evidence/{ev.id}/amend", {**amend, "present": "9"})
    assert resp.status_code == 422 and "实到人数不能多于应到人数" in resp.text
    assert sec.post(f"/evidence/{ev.id}/void", {"reason": ""}).status_code == 422
    assert sec.post(f"/evidence/{ev.id}/void", {"reason": "重复"}).status_code == 303
    run_page = sec.get(f"/runs/{run2}").text
    assert "已作废" in run_page and "作废材料" in run_page
    sibling = web_user(w.client.app, "admin_h2")
    before = snapshot(w.engine)
    assert sibling.get(f"/evidence/{ev.id}").status_code == 404
    assert sibling.post(f"/evidence/{ev.id}/void", {"reason": "x"}).status_code == 404
    assert snapshot(w.engine) == before

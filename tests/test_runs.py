"""Runs on SQLite and PostgreSQL: evidence, requests, approval chains, return, withdraw,
extensions, acting on behalf, and the refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from states import runs
from states.campaigns import campaign_status, launch_campaign
from states.catalog import DONE
from states.errors import Conflict, Forbidden, InvalidInput, NotFound, RequirementsUnmet
from states.models import AuditEvent, Decision, OutboxMessage, Request, Role, Run
from states.users import Actor
from tests.factories import MEETING, REVIEW, activity, make_tree, make_user

HEADINGS = ["党性教育", "岗位奉献", "服务群众", "亮牌示范", "组织创新"]


class World:
    """A tree, a campaign over it, and the people who act on it."""

    def __init__(self, session: Session) -> None:
        self.s = session
        self.orgs = make_tree(session)
        self.sec1 = make_user(session, "sec1", ("S1", Role.SECRETARY))
        self.sec2 = make_user(session, "sec2", ("S2", Role.SECRETARY))
        self.sec4 = make_user(session, "sec4", ("S4", Role.SECRETARY))
        self.g1 = make_user(session, "g1", ("G1", Role.COMMITTEE))
        self.g1b = make_user(session, "g1b", ("G1", Role.COMMITTEE))
        self.h1 = make_user(session, "h1", ("H1", Role.COMMITTEE))
        self.h2 = make_user(session, "h2", ("H2", Role.COMMITTEE))
        # The secretary of S2 also sits on the general-branch committee above it.
        self.dual = make_user(session, "dual", ("S1", Role.SECRETARY), ("G1", Role.COMMITTEE))
        self.organiser = make_user(session, "org", ("B", Role.ORGANISER))
        self.campaign = launch_campaign(
            session, template_key="chuangxian_zhengyou", root_code="B", actor=self.organiser
        )
        session.commit()

    def run(self, code: str) -> Run:
        org = self.orgs[code]
        return self.s.execute(
            select(Run).where(Run.org_id == org.id, Run.campaign_id == self.campaign.id)
        ).scalar_one()

    def do(self, fn, /, **kw):  # type: ignore[no-untyped-def]
        """Call a service in a transaction of its own: commit on success, roll back on error."""
        try:
            out = fn(self.s, **kw)
            self.s.commit()
            return out
        except Exception:
            self.s.rollback()
            raise

    def fill(self, run_id: int, actor: Actor) -> None:
        """Record what the current stage of 创先争优 needs."""
        run = self.s.get(Run, run_id)
        assert run is not None
        self.s.refresh(run)
        ev = {
            "mobilize": [("meeting", MEETING)],
            "pledge": [("commitment", {"member": f"党员{i}", "text": "带头学习"}) for i in range(3)]
            + [
                ("commitment", {"text": "支部承诺"}),
                ("document", {"category": "承诺公示", "title": "公示"}),
            ],
            "strive": [("activity", activity(h)) for h in HEADINGS],
            "appraise": [("appraisal", {"rating": "满意"}) for _ in range(10)],
            "commend": [("decision", {"grade": "好", "commendation": "先进基层党组织"})],
        }.get(run.stage, [])
        for kind, data in ev:
            who = self.g1 if kind == "decision" else actor  # grades are decided above
            self.do(runs.record_evidence, run_id=run_id, actor=who, kind=kind, data=data)
        if run.stage == "review":
            self.do(runs.record_evidence, run_id=run_id, actor=self.g1, kind="review", data=REVIEW)


@pytest.fixture
def w(session: Session) -> World:
    return World(session)


def _count(session: Session, model: type) -> int:
    return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_launch_creates_one_run_per_branch(w: World) -> None:
    runs_ = w.s.execute(select(Run).where(Run.campaign_id == w.campaign.id)).scalars().all()
    assert sorted(w.s.get_one(type(w.orgs["S1"]), r.org_id).code for r in runs_) == [
        "S1",
        "S2",
        "S3",
        "S4",
    ]
    assert {r.stage for r in runs_} == {"mobilize"}
    assert all(r.deadline is not None and r.deadline > r.entered_at for r in runs_)
    status = campaign_status(w.s, w.campaign)
    assert status.total == 4 and status.stages[0].runs == 4 and status.done == 0


def test_full_walk_through_all_stages(w: World) -> None:
    run_id = w.run("S1").id or 0
    for _ in range(6):
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
        stage = req.from_stage
        w.do(runs.approve, request_id=req.id, actor=w.g1, opinion="同意")
        if stage == "commend":  # the commend chain is the parent, then the nearest 党委
            assert req.chain == [w.orgs["G1"].id, w.orgs["H1"].id]
            assert w.run("S1").stage == "commend"
            w.do(runs.approve, request_id=req.id, actor=w.h1, opinion="同意表彰")
    run = w.run("S1")
    w.s.refresh(run)
    assert run.stage == DONE and run.completed_at is not None and run.deadline is None
    assert campaign_status(w.s, w.campaign).done == 1
    actions = [e.action for e in runs.history(w.s, run_id, w.sec1)[0]]
    assert actions[0] == "stage.advanced" and actions.count("stage.advanced") == 6


def test_unmet_requirements_give_every_reason(w: World) -> None:
    run_id = w.run("S1").id or 0
    w.do(runs.record_evidence, run_id=run_id, actor=w.sec1, kind="meeting", data=MEETING)
    w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=w.run("S1").pending_request_id, actor=w.g1)
    with pytest.raises(RequirementsUnmet) as err:
        w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    reasons = [d["reason"] for d in err.value.details]
    assert reasons[0] == "公开承诺：3 名党员中 3 名尚未提交承诺；公开承诺：支部承诺尚未提交"
    assert reasons[1] == "公开承诺：尚未记录承诺公示"
    assert _count(w.s, Request) == 1  # nothing written by the refused request


def test_return_with_reason_then_ask_again(w: World) -> None:
    run_id = w.run("S1").id or 0
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    with pytest.raises(InvalidInput):
        w.do(runs.return_request, request_id=req.id, actor=w.g1, reason="  ")
    w.do(runs.return_request, request_id=req.id, actor=w.g1, reason="会议记录不完整")
    run = w.run("S1")
    w.s.refresh(run)
    assert run.stage == "mobilize" and run.pending_request_id is None
    assert w.s.get_one(Request, req.id).return_reason == "会议记录不完整"
    box = w.s.execute(
        select(OutboxMessage).where(OutboxMessage.event_kind == "request_returned")
    ).scalar_one()
    assert box.payload["reason"] == "会议记录不完整" and box.org_id == w.orgs["S1"].id
    again = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=again.id, actor=w.g1)
    w.s.refresh(run)
    assert run.stage == "pledge"


def test_return_sends_run_back_to_an_earlier_stage(w: World) -> None:
    run_id = w.run("S1").id or 0
    for _ in range(2):
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
        w.do(runs.approve, request_id=req.id, actor=w.g1)
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.return_request, request_id=req.id, actor=w.g1, reason="承诺未公示", to_stage="pledge")
    run = w.run("S1")
    w.s.refresh(run)
    assert run.stage == "pledge"
    with pytest.raises(Conflict, match="不能执行"):
        w.do(runs.send_back, run_id=run_id, actor=w.g1, to_stage="strive", reason="x")
    w.do(runs.send_back, run_id=run_id, actor=w.g1, to_stage="mobilize", reason="重新动员")
    w.s.refresh(run)
    assert run.stage == "mobilize"
    with pytest.raises(Forbidden):
        w.do(runs.send_back, run_id=run_id, actor=w.sec1, to_stage="mobilize", reason="x")


def test_withdraw_only_by_requester_while_pending(w: World) -> None:
    run_id = w.run("S1").id or 0
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    with pytest.raises(Conflict, match="已有待审批的申请"):
        w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    with pytest.raises(Forbidden, match="申请人本人"):
        w.do(runs.withdraw, request_id=req.id, actor=w.g1)
    w.do(runs.withdraw, request_id=req.id, actor=w.sec1)
    assert w.s.get_one(Request, req.id).status == "withdrawn"
    with pytest.raises(Conflict, match="已撤回"):
        w.do(runs.approve, request_id=req.id, actor=w.g1)
    with pytest.raises(Conflict, match="已撤回"):
        w.do(runs.withdraw, request_id=req.id, actor=w.sec1)
    assert w.run("S1").pending_request_id is None


def test_self_approval_refused_even_on_the_committee_above(w: World) -> None:
    run_id = w.run("S1").id or 0
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.dual)
    with pytest.raises(Forbidden, match="自己提交"):
        w.do(runs.approve, request_id=req.id, actor=w.dual)
    w.do(runs.withdraw, request_id=req.id, actor=w.dual)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    with pytest.raises(Forbidden, match="本支部"):
        w.do(runs.approve, request_id=req.id, actor=w.dual)
    assert _count(w.s, Decision) == 0


def test_only_the_current_steps_committee_approves(w: World) -> None:
    run_id = w.run("S1").id or 0
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    with pytest.raises(Forbidden, match="第一医院内科党总支"):
        w.do(runs.approve, request_id=req.id, actor=w.h1)
    with pytest.raises(NotFound):  # H2's committee cannot even see H1's branches
        w.do(runs.approve, request_id=req.id, actor=w.h2)
    with pytest.raises(NotFound):
        w.do(runs.approve, request_id=req.id, actor=w.sec2)


def test_one_person_cannot_decide_two_steps(w: World) -> None:
    both = make_user(w.s, "both", ("G1", Role.COMMITTEE), ("H1", Role.COMMITTEE))
    run_id = w.run("S1").id or 0
    for _ in range(5):
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
        w.do(runs.approve, request_id=req.id, actor=w.g1)
    w.fill(run_id, w.sec1)
    req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    w.do(runs.approve, request_id=req.id, actor=both)
    with pytest.raises(Forbidden, match="不同的人"):
        w.do(runs.approve, request_id=req.id, actor=both)
    w.do(runs.approve, request_id=req.id, actor=w.h1)
    assert w.s.get_one(Request, req.id).status == "approved"


def test_act_on_behalf_is_recorded(w: World) -> None:
    run_id = w.run("S2").id or 0
    ev = w.do(runs.record_evidence, run_id=run_id, actor=w.h1, kind="meeting", data=MEETING)
    assert ev.on_behalf
    req = w.do(runs.request_advance, run_id=run_id, actor=w.h1, comment="支部书记外出，代办")
    assert req.on_behalf
    # The person who acted on behalf cannot approve it; another committee member can.
    with pytest.raises(Forbidden):
        w.do(runs.approve, request_id=req.id, actor=w.h1)
    w.do(runs.approve, request_id=req.id, actor=w.g1)
    event = w.s.execute(
        select(AuditEvent).where(
            AuditEvent.stream == f"run:{run_id}", AuditEvent.action == "request.submitted"
        )
    ).scalar_one()
    assert event.data["on_behalf"] is True
    own = w.do(
        runs.record_evidence,
        run_id=run_id,
        actor=w.sec2,
        kind="document",
        data={"category": "承诺公示", "title": "公示栏"},
    )
    assert not own.on_behalf


def test_outsiders_cannot_touch_a_run(w: World) -> None:
    run_id = w.run("S1").id or 0
    for actor in (w.sec2, w.sec4, w.h2):
        with pytest.raises(NotFound):
            w.do(runs.record_evidence, run_id=run_id, actor=actor, kind="meeting", data=MEETING)
        with pytest.raises(NotFound):
            w.do(runs.request_advance, run_id=run_id, actor=actor)
    supervisor = make_user(w.s, "sup", ("B", Role.SUPERVISOR))
    with pytest.raises(Forbidden):  # sees the run, may not change it
        w.do(runs.record_evidence, run_id=run_id, actor=supervisor, kind="meeting", data=MEETING)
    assert _count(w.s, AuditEvent) == 1  # the launch only: nothing the outsiders tried was written


def test_review_only_by_a_superior(w: World) -> None:
    run_id = w.run("S1").id or 0
    for _ in range(3):
        w.fill(run_id, w.sec1)
        req = w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
        w.do(runs.approve, request_id=req.id, actor=w.g1)
    with pytest.raises(Forbidden, match="上级"):
        w.do(runs.record_evidence, run_id=run_id, actor=w.sec1, kind="review", data=REVIEW)
    ev = w.do(runs.record_evidence, run_id=run_id, actor=w.g1, kind="review", data=REVIEW)
    assert ev.recorder_org_id == w.orgs["G1"].id and not ev.on_behalf


def test_bad_evidence_names_the_field(w: World) -> None:
    run_id = w.run("S1").id or 0
    with pytest.raises(InvalidInput) as err:
        w.do(
            runs.record_evidence,
            run_id=run_id,
            actor=w.sec1,
            kind="meeting",
            data={**MEETING, "present": 9},
        )
    assert "实到人数" in str(err.value.details)
    with pytest.raises(InvalidInput, match="不收"):
        w.do(
            runs.record_evidence, run_id=run_id, actor=w.sec1, kind="decision", data={"grade": "好"}
        )
    with pytest.raises(InvalidInput) as err:
        w.do(
            runs.record_evidence,
            run_id=run_id,
            actor=w.sec1,
            kind="meeting",
            data={**MEETING, "state": "done"},
        )
    assert err.value.details[0]["field"] == "state"


def test_extension_decided_by_parent(w: World) -> None:
    run = w.run("S1")
    old = run.deadline
    assert old is not None
    with pytest.raises(InvalidInput, match="理由"):
        w.do(
            runs.request_extension,
            run_id=run.id,
            actor=w.sec1,
            new_deadline=old + timedelta(days=7),
            reason="",
        )
    with pytest.raises(InvalidInput, match="晚于"):
        w.do(runs.request_extension, run_id=run.id, actor=w.sec1, new_deadline=old, reason="忙")
    req = w.do(
        runs.request_extension,
        run_id=run.id,
        actor=w.sec1,
        new_deadline=old + timedelta(days=7),
        reason="疫情防控任务重",
    )
    with pytest.raises(Conflict, match="延期申请"):
        w.do(
            runs.request_extension,
            run_id=run.id,
            actor=w.sec1,
            new_deadline=old + timedelta(days=8),
            reason="再延",
        )
    with pytest.raises(Forbidden):
        w.do(runs.approve, request_id=req.id, actor=w.h1)
    w.do(runs.approve, request_id=req.id, actor=w.g1, opinion="同意延期一周")
    w.s.refresh(run)
    assert run.deadline == old + timedelta(days=7) and run.stage == "mobilize"
    granted = w.s.execute(
        select(AuditEvent).where(AuditEvent.action == "extension.granted")
    ).scalar_one()
    assert granted.data["reason"] == "疫情防控任务重"


def test_allowed_actions(w: World) -> None:
    run_id = w.run("S1").id or 0
    ctx = runs.load_run(w.s, run_id, w.sec1)
    assert runs.allowed_actions(w.s, ctx, w.sec1) == [
        "record_evidence",
        "request_extension",
        "request_advance",
    ]
    w.fill(run_id, w.sec1)
    w.do(runs.request_advance, run_id=run_id, actor=w.sec1)
    ctx = runs.load_run(w.s, run_id, w.sec1)
    assert "withdraw" in runs.allowed_actions(w.s, ctx, w.sec1)
    assert "approve" not in runs.allowed_actions(w.s, ctx, w.sec1)
    assert {"approve", "return"} <= set(runs.allowed_actions(w.s, ctx, w.g1))
    assert "approve" not in runs.allowed_actions(w.s, ctx, w.h1)


def test_stale_version_is_a_conflict(w: World) -> None:
    run = w.run("S1")
    w.fill(run.id or 0, w.sec1)
    from states.errors import ConcurrentUpdate

    with pytest.raises(ConcurrentUpdate):
        w.do(runs.request_advance, run_id=run.id, actor=w.sec1, expected_version=run.version - 1)

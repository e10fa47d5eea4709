"""Each shipped template walked end to end in the database: chains, returns, withdrawals,
extensions and refusals, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from states import runs
from states.campaigns import launch_campaign
from states.catalog import DONE, ReviewPresent, builtin_templates
from states.demo import REVIEW, sample_evidence
from states.errors import Forbidden, RequirementsUnmet
from states.models import Organisation, Role, Run
from states.users import Actor
from tests.factories import make_tree, make_user

KEYS = sorted(builtin_templates())


class Walk:
    def __init__(self, session: Session, key: str) -> None:
        self.s = session
        self.orgs = make_tree(session)
        self.sec = {c: make_user(session, f"sec_{c}", (c, Role.SECRETARY)) for c in ("S1", "S3")}
        self.committee = {
            c: make_user(session, f"c_{c}", (c, Role.COMMITTEE)) for c in ("G1", "H1", "B")
        }
        self.campaign = launch_campaign(session, template_key=key, root_code="B", allow_past=True)
        self.tpl = builtin_templates()[key]
        session.commit()

    def run(self, code: str) -> Run:
        org = self.orgs[code]
        run = self.s.exec(
            select(Run).where(Run.org_id == org.id, Run.campaign_id == self.campaign.id)
        ).one()
        self.s.refresh(run)
        return run

    def fill(self, code: str) -> None:
        run = self.run(code)
        stage = self.tpl.stage(run.stage)
        parent = self.s.get_one(Organisation, self.orgs[code].parent_id)
        reviewer = self.committee[parent.code]
        for kind, data in sample_evidence(self.tpl, stage, self.orgs[code].member_count):
            who = reviewer if kind == "decision" else self.sec[code]  # grades are decided above
            runs.record_evidence(self.s, run_id=run.id or 0, actor=who, kind=kind, data=data)
        if any(isinstance(r, ReviewPresent) for r in stage.requirements):
            runs.record_evidence(
                self.s, run_id=run.id or 0, actor=reviewer, kind="review", data=REVIEW
            )
        self.s.commit()

    def approver(self, org_id: int) -> Actor:
        code = self.s.get_one(Organisation, org_id).code
        return self.committee[code]


@pytest.mark.parametrize("key", KEYS)
def test_walk_every_stage_with_the_templates_chains(session: Session, key: str) -> None:
    w = Walk(session, key)
    for code in ("S1", "S3"):
        while w.run(code).stage != DONE:
            stage = w.run(code).stage
            w.fill(code)
            req = runs.request_advance(session, run_id=w.run(code).id or 0, actor=w.sec[code])
            session.commit()
            expected = []
            for step in w.tpl.chain_for(stage):
                # Ancestors nearest first: S1 → G1, H1, B; S3 → H1, B.
                line = [
                    a for a in ("G1", "H1", "B") if w.orgs[code].path.startswith(w.orgs[a].path)
                ]
                pick = (
                    line[step.parent - 1]
                    if step.parent
                    else next(a for a in line if w.orgs[a].kind == step.nearest_kind)
                )
                if w.orgs[pick].id not in expected:
                    expected.append(w.orgs[pick].id)
            assert req.chain == expected, (code, stage)
            for org_id in req.chain:
                runs.approve(
                    session, request_id=req.id or 0, actor=w.approver(org_id), opinion="同意"
                )
                session.commit()
            assert w.run(code).stage == w.tpl.next_stage(stage)
        assert w.run(code).completed_at is not None


@pytest.mark.parametrize("key", KEYS)
def test_refusals_return_withdraw_extend(session: Session, key: str) -> None:
    w = Walk(session, key)
    run_id = w.run("S1").id or 0
    with pytest.raises(RequirementsUnmet) as err:
        runs.request_advance(session, run_id=run_id, actor=w.sec["S1"])
    session.rollback()
    first = w.tpl.stages[0]
    assert len(err.value.details) == len(first.requirements)
    assert all(d["reason"].startswith(first.name) for d in err.value.details)
    w.fill("S1")
    req = runs.request_advance(session, run_id=run_id, actor=w.sec["S1"])
    session.commit()
    runs.return_request(
        session, request_id=req.id or 0, actor=w.committee["G1"], reason="请补充会议纪要"
    )
    session.commit()
    again = runs.request_advance(session, run_id=run_id, actor=w.sec["S1"])
    session.commit()
    runs.withdraw(session, request_id=again.id or 0, actor=w.sec["S1"])
    session.commit()
    run = w.run("S1")
    assert run.stage == first.id and run.pending_request_id is None
    old = run.deadline
    assert old is not None
    ext = runs.request_extension(
        session,
        run_id=run_id,
        actor=w.sec["S1"],
        new_deadline=old + timedelta(days=5),
        reason="人手不足",
    )
    session.commit()
    with pytest.raises(Forbidden):  # only the parent decides an extension
        runs.approve(session, request_id=ext.id or 0, actor=w.committee["H1"])
    session.rollback()
    runs.approve(session, request_id=ext.id or 0, actor=w.committee["G1"])
    session.commit()
    assert w.run("S1").deadline == old + timedelta(days=5)

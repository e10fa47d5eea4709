"""The shared machines: every legal transition of each template, every illegal one refused."""

from __future__ import annotations

import pytest

from states.catalog import (
    DONE,
    ActivityHeadings,
    AppraisalCount,
    CommitmentShare,
    DecisionRecorded,
    EvidenceCount,
    ReviewPresent,
    Stage,
    Template,
    builtin_templates,
)
from states.errors import Conflict
from states.machines import ADVANCE, RETURN_PREFIX, allowed_triggers, fire, machine_for, mermaid
from states.requirements import BRANCH_SUBJECT, RunFacts, evaluate

TEMPLATES = sorted(builtin_templates().values(), key=lambda t: t.key)
MEMBERS = 15


def satisfying(stage: Stage, members: int = MEMBERS) -> RunFacts:
    """Return facts that meet every requirement of `stage`."""
    counts: dict[tuple[str, str | None], int] = {}
    for req in stage.requirements:
        if isinstance(req, EvidenceCount):
            counts[(req.kind, req.subject)] = req.min
        elif isinstance(req, ActivityHeadings):
            counts.update({("activity", h): req.min_each for h in req.headings})
        elif isinstance(req, CommitmentShare):
            counts.update({("commitment", f"党员{i}"): 1 for i in range(members)})
            counts[("commitment", BRANCH_SUBJECT)] = 1
        elif isinstance(req, ReviewPresent):
            counts[("review", None)] = req.min
        elif isinstance(req, AppraisalCount):
            counts[("appraisal", "满意")] = max(req.min, int(req.min_member_ratio * members) + 1)
        elif isinstance(req, DecisionRecorded):
            counts[("decision", "好")] = 1
    return RunFacts(members, counts)


def _ids(tpl: Template) -> list[str]:
    return tpl.stage_ids


@pytest.mark.parametrize("tpl", TEMPLATES, ids=lambda t: t.key)
def test_every_advance_with_requirements_met(tpl: Template) -> None:
    state = tpl.stage_ids[0]
    walked = [state]
    while state != DONE:
        outcome = fire(tpl, state, ADVANCE, satisfying(tpl.stage(state)))
        assert outcome.moved and not outcome.unmet
        assert outcome.state == tpl.next_stage(state)
        state = outcome.state
        walked.append(state)
    assert walked == [*tpl.stage_ids, DONE]


@pytest.mark.parametrize("tpl", TEMPLATES, ids=lambda t: t.key)
def test_every_advance_refused_without_evidence(tpl: Template) -> None:
    for stage in tpl.stages:
        outcome = fire(tpl, stage.id, ADVANCE, RunFacts(MEMBERS, {}))
        assert not outcome.moved
        assert outcome.state == stage.id
        assert len(outcome.unmet) == len(stage.requirements)
        assert all(u.reason.startswith(stage.name + "：") for u in outcome.unmet)


@pytest.mark.parametrize("tpl", TEMPLATES, ids=lambda t: t.key)
def test_every_return_to_an_earlier_stage(tpl: Template) -> None:
    ids = tpl.stage_ids
    for i, source in enumerate(ids):
        expected = {ADVANCE} | {RETURN_PREFIX + e for e in ids[:i]}
        assert set(allowed_triggers(tpl, source)) == expected
        for target in ids[:i]:
            assert fire(tpl, source, RETURN_PREFIX + target).state == target


@pytest.mark.parametrize("tpl", TEMPLATES, ids=lambda t: t.key)
def test_illegal_transitions_refused_with_reason(tpl: Template) -> None:
    ids = tpl.stage_ids
    for i, source in enumerate(ids):
        for later in ids[i:]:
            with pytest.raises(Conflict, match=f"当前阶段「{tpl.stage(source).name}」不能执行"):
                fire(tpl, source, RETURN_PREFIX + later)
    with pytest.raises(Conflict, match="已完成"):
        fire(tpl, DONE, ADVANCE, RunFacts(MEMBERS, {}))
    assert allowed_triggers(tpl, DONE) == []
    for name in (f"to_{ids[-1]}", "to_done", "trigger"):
        with pytest.raises(Conflict):
            fire(tpl, ids[0], name)


def test_machine_is_shared_and_keeps_no_models() -> None:
    tpl = TEMPLATES[0]
    machine = machine_for(tpl)
    for _ in range(50):
        fire(tpl, tpl.stage_ids[0], ADVANCE, RunFacts(MEMBERS, {}))
    assert machine_for(tpl) is machine
    assert machine.models == []
    assert not machine.auto_transitions


def test_commitment_reason_in_words() -> None:
    tpl = builtin_templates()["chuangxian_zhengyou"]
    stage = tpl.stage("pledge")
    facts = RunFacts(15, {("commitment", f"党员{i}"): 1 for i in range(12)})
    reasons = [s.reason for s in evaluate(stage, facts) if not s.met]
    assert "公开承诺：15 名党员中 3 名尚未提交承诺" in reasons[0]
    assert "支部承诺尚未提交" in reasons[0]
    assert "承诺公示" in reasons[1]


def test_headings_reason_lists_missing() -> None:
    tpl = builtin_templates()["chuangxian_zhengyou"]
    facts = RunFacts(5, {("activity", "党性教育"): 2, ("activity", "服务群众"): 1})
    (status,) = evaluate(tpl.stage("strive"), facts)
    assert not status.met
    assert status.reason == "全面争创：以下方面尚无活动记录：岗位奉献、亮牌示范、组织创新"
    assert (status.have, status.need) == (2, 5)


def test_appraisal_needs_member_ratio() -> None:
    tpl = builtin_templates()["jinwei_shengji"]
    (status,) = evaluate(tpl.stage("public_rating"), RunFacts(40, {("appraisal", "满意"): 20}))
    assert not status.met
    assert status.reason == "群众评议：已收到 20 份群众评议表，至少需要 32 份"


def test_grade_required_for_grading() -> None:
    tpl = builtin_templates()["jinwei_shengji"]
    (status,) = evaluate(tpl.stage("grading"), RunFacts(5, {("decision", None): 1}))
    assert not status.met and "等次" in status.reason


def test_mermaid_lists_every_stage() -> None:
    tpl = builtin_templates()["chuangxian_zhengyou"]
    text = mermaid(tpl)
    assert text.startswith("stateDiagram-v2")
    for s in tpl.stages:
        assert f"{s.id}: {s.name}" in text

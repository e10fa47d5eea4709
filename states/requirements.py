"""Stage requirements as named guards that give reasons a person can read, in Chinese."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from states.catalog import (
    ActivityHeadings,
    AppraisalCount,
    CommitmentShare,
    DecisionRecorded,
    EvidenceCount,
    ReviewPresent,
    Stage,
)
from states.models import Evidence, EvidenceLink

BRANCH_SUBJECT = "（支部）"
EVIDENCE_LABELS = {
    "meeting": "会议",
    "commitment": "承诺",
    "activity": "活动",
    "review": "点评",
    "appraisal": "测评",
    "decision": "评定结果",
    "document": "材料",
}


@dataclass(frozen=True)
class RunFacts:
    """What a run has recorded for one stage: counts per (kind, subject), and member count."""

    member_count: int
    counts: dict[tuple[str, str | None], int] = field(default_factory=dict)

    def count(self, kind: str, subject: str | None = None) -> int:
        """Return how many records of `kind` (with `subject`, if given) exist."""
        if subject is not None:
            return self.counts.get((kind, subject), 0)
        return sum(n for (k, _), n in self.counts.items() if k == kind)

    def subjects(self, kind: str) -> set[str]:
        """Return the distinct subjects recorded for `kind`."""
        return {s for (k, s) in self.counts if k == kind and s is not None}


def load_facts(session: Session, *, run_id: int, stage: str, member_count: int) -> RunFacts:
    """Return the facts of one run's stage with one grouped query."""
    rows = session.execute(
        select(Evidence.kind, Evidence.subject, func.count())
        .join(EvidenceLink, col(EvidenceLink.evidence_id) == col(Evidence.id))
        .where(
            EvidenceLink.run_id == run_id,
            EvidenceLink.stage == stage,
            Evidence.status == "active",
        )
        .group_by(col(Evidence.kind), col(Evidence.subject))
    ).all()
    return RunFacts(member_count, {(k, s): int(n) for k, s, n in rows})


@dataclass(frozen=True)
class RequirementStatus:
    """One requirement of a stage: met or not, with the reason in words."""

    key: str
    label: str
    met: bool
    reason: str
    have: int
    need: int


def _evidence_count(stage: Stage, req: EvidenceCount, facts: RunFacts) -> RequirementStatus:
    have = facts.count(req.kind, req.subject)
    met = have >= req.min
    if met:
        reason = f"{stage.name}：{req.label}已记录 {have} 项"
    elif have == 0:
        reason = f"{stage.name}：尚未记录{req.label}"
    else:
        reason = f"{stage.name}：{req.label}需要 {req.min} 项，已有 {have} 项"
    return RequirementStatus(
        f"{req.type}:{req.kind}:{req.subject or ''}", req.label, met, reason, have, req.min
    )


def _headings(stage: Stage, req: ActivityHeadings, facts: RunFacts) -> RequirementStatus:
    missing = [h for h in req.headings if facts.count("activity", h) < req.min_each]
    done = len(req.headings) - len(missing)
    if missing:
        reason = f"{stage.name}：以下方面尚无活动记录：{'、'.join(missing)}"
    else:
        reason = f"{stage.name}：{len(req.headings)} 个方面均已开展活动"
    label = f"{'、'.join(req.headings)}各至少 {req.min_each} 项活动"
    return RequirementStatus(req.type, label, not missing, reason, done, len(req.headings))


def _commitments(stage: Stage, req: CommitmentShare, facts: RunFacts) -> RequirementStatus:
    members = facts.member_count
    with_commitment = len(facts.subjects("commitment") - {BRANCH_SUBJECT})
    need = math.ceil(req.min_share * members - 1e-9)
    problems = []
    if members <= 0:
        problems.append(f"{stage.name}：尚未登记党员人数，无法核对承诺")
    elif with_commitment < need:
        if req.min_share >= 1:
            problems.append(
                f"{stage.name}：{members} 名党员中 {members - with_commitment} 名尚未提交承诺"
            )
        else:
            problems.append(
                f"{stage.name}：{members} 名党员中已有 {with_commitment} 名提交承诺，"
                f"至少需要 {need} 名"
            )
    if req.branch_commitment and facts.count("commitment", BRANCH_SUBJECT) == 0:
        problems.append(f"{stage.name}：支部承诺尚未提交")
    met = not problems
    reason = "；".join(problems) if problems else f"{stage.name}：{members} 名党员均已提交承诺"
    if met and req.min_share < 1:
        reason = f"{stage.name}：{with_commitment}/{members} 名党员已提交承诺"
    label = f"党员承诺比例不低于 {round(req.min_share * 100)}%"
    return RequirementStatus(req.type, label, met, reason, with_commitment, need)


def _review(stage: Stage, req: ReviewPresent, facts: RunFacts) -> RequirementStatus:
    have = facts.count("review")
    met = have >= req.min
    reason = f"{stage.name}：上级党组织已点评" if met else f"{stage.name}：上级党组织尚未点评"
    return RequirementStatus(req.type, "上级点评", met, reason, have, req.min)


def _appraisals(stage: Stage, req: AppraisalCount, facts: RunFacts) -> RequirementStatus:
    have = facts.count("appraisal")
    need = max(req.min, math.ceil(req.min_member_ratio * facts.member_count - 1e-9))
    met = have >= need
    reason = f"{stage.name}：已收到 {have} 份测评" + ("" if met else f"，至少需要 {need} 份")
    return RequirementStatus(req.type, f"测评不少于 {need} 份", met, reason, have, need)


def _decision(stage: Stage, req: DecisionRecorded, facts: RunFacts) -> RequirementStatus:
    if req.needs_grade:
        have = sum(n for (k, s), n in facts.counts.items() if k == "decision" and s)
        missing = f"{stage.name}：尚未录入评定等次"
    else:
        have = facts.count("decision")
        missing = f"{stage.name}：尚未录入评定结果"
    met = have >= 1
    reason = f"{stage.name}：评定结果已录入" if met else missing
    return RequirementStatus(req.type, "评定结果", met, reason, have, 1)


_CHECKS: dict[type, Callable[..., RequirementStatus]] = {
    EvidenceCount: _evidence_count,
    ActivityHeadings: _headings,
    CommitmentShare: _commitments,
    ReviewPresent: _review,
    AppraisalCount: _appraisals,
    DecisionRecorded: _decision,
}


def evaluate(stage: Stage, facts: RunFacts) -> list[RequirementStatus]:
    """Return the status of every requirement of `stage`, in template order."""
    return [_CHECKS[type(req)](stage, req, facts) for req in stage.requirements]


def describe(req: object) -> str:
    """Return a requirement in words, for template listings."""
    if isinstance(req, EvidenceCount):
        what = EVIDENCE_LABELS[req.kind]
        return f"至少 {req.min} 项{req.label}（{what}）"
    if isinstance(req, ActivityHeadings):
        return f"{'、'.join(req.headings)}每个方面至少 {req.min_each} 项活动"
    if isinstance(req, CommitmentShare):
        branch = "，并有支部承诺" if req.branch_commitment else ""
        return f"不少于 {round(req.min_share * 100)}% 的党员提交承诺{branch}"
    if isinstance(req, ReviewPresent):
        return "上级党组织完成点评"
    if isinstance(req, AppraisalCount):
        ratio = (
            f"（且不少于党员人数的 {req.min_member_ratio:g} 倍）" if req.min_member_ratio else ""
        )
        return f"至少 {req.min} 份群众测评{ratio}"
    if isinstance(req, DecisionRecorded):
        return "录入评定等次" if req.needs_grade else "录入评定结果"
    return str(req)

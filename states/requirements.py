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
MEMBER_PREFIX = "member:"
#: The commitment guard names at most this many missing members, then says 等 N 人.
MAX_NAMED = 10
EVIDENCE_LABELS = {
    "meeting": "会议",
    "commitment": "承诺",
    "activity": "活动",
    "review": "点评",
    "appraisal": "群众评议",
    "decision": "评定结果",
    "document": "材料",
    "self_assessment": "自评",
}


def member_subject(member_id: int) -> str:
    """The subject of a roster member's commitment."""
    return f"{MEMBER_PREFIX}{member_id}"


@dataclass(frozen=True)
class RunFacts:
    """What a run has recorded for one stage: counts per (kind, subject), and member count.

    `roster` (member id -> name of the 在册 members) is set when the branch has a roster: the
    member count is then its size and the commitment guard names who is missing.
    """

    member_count: int
    counts: dict[tuple[str, str | None], int] = field(default_factory=dict)
    roster: dict[int, str] | None = None

    def count(self, kind: str, subject: str | None = None) -> int:
        """Return how many records of `kind` (with `subject`, if given) exist."""
        if subject is not None:
            return self.counts.get((kind, subject), 0)
        return sum(n for (k, _), n in self.counts.items() if k == kind)

    def subjects(self, kind: str) -> set[str]:
        """Return the distinct subjects recorded for `kind`."""
        return {s for (k, s) in self.counts if k == kind and s is not None}


def load_facts(
    session: Session,
    *,
    run_id: int,
    stage: str,
    member_count: int,
    roster: dict[int, str] | None = None,
) -> RunFacts:
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
    counts = {(k, s): int(n) for k, s, n in rows}
    if roster:
        return RunFacts(len(roster), counts, roster)
    return RunFacts(member_count, counts)


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


def _committed(facts: RunFacts) -> set[str]:
    """The members with a commitment: roster subjects of members still 在册, or names."""
    subjects = facts.subjects("commitment") - {BRANCH_SUBJECT}
    if facts.roster is None:
        return subjects
    ids = {s.removeprefix(MEMBER_PREFIX) for s in subjects if s.startswith(MEMBER_PREFIX)}
    return {str(i) for i in facts.roster if str(i) in ids}


def _missing_names(facts: RunFacts, committed: set[str]) -> str:
    names = [n for i, n in (facts.roster or {}).items() if str(i) not in committed]
    shown = "、".join(names[:MAX_NAMED])
    return shown + (f" 等 {len(names)} 人" if len(names) > MAX_NAMED else "")


def _share_problem(stage: Stage, req: CommitmentShare, facts: RunFacts, done: set[str]) -> str:
    members, have = facts.member_count, len(done)
    need = math.ceil(req.min_share * members - 1e-9)
    if facts.roster is not None:
        missing = f"尚有 {members - have} 名党员未提交承诺：{_missing_names(facts, done)}"
        if req.min_share >= 1:
            return f"{stage.name}：{missing}"
        return f"{stage.name}：已有 {have} 名党员提交承诺，至少需要 {need} 名；{missing}"
    if req.min_share >= 1:
        return f"{stage.name}：{members} 名党员中 {members - have} 名尚未提交承诺"
    return f"{stage.name}：{members} 名党员中已有 {have} 名提交承诺，至少需要 {need} 名"


def _commitments(stage: Stage, req: CommitmentShare, facts: RunFacts) -> RequirementStatus:
    members = facts.member_count
    done = _committed(facts)
    with_commitment = len(done)
    need = math.ceil(req.min_share * members - 1e-9)
    problems = []
    if members <= 0:
        problems.append(f"{stage.name}：尚未登记党员人数，无法核对承诺")
    elif with_commitment < need:
        problems.append(_share_problem(stage, req, facts, done))
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
    reason = f"{stage.name}：已收到 {have} 份群众评议表" + ("" if met else f"，至少需要 {need} 份")
    return RequirementStatus(req.type, f"群众评议表不少于 {need} 份", met, reason, have, need)


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
        return f"至少 {req.min} 份群众评议表{ratio}"
    if isinstance(req, DecisionRecorded):
        return "录入评定等次" if req.needs_grade else "录入评定结果"
    return str(req)

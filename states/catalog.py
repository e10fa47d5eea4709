"""Campaign templates as data: YAML under `states/templates/`, validated with pydantic on load."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from states.errors import InvalidInput, NotFound
from states.models import ORG_KINDS

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
STAGE_ID = re.compile(r"^[a-z][a-z0-9_]{0,40}$")
#: Who owes a stage's work: the branch itself, the organisation approving its move out of the
#: stage (the approval chain's first step), or the campaign's launching organisation.
OWNERS = ("branch", "approver", "launcher")
BRANCH = "branch"
DONE = "done"
DONE_LABEL = "已完成"
EVIDENCE_KINDS = (
    "meeting",
    "commitment",
    "activity",
    "review",
    "appraisal",
    "decision",
    "document",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EvidenceCount(_Strict):
    """At least `min` evidence records of `kind` (optionally with a given subject)."""

    type: Literal["evidence_count"]
    kind: Literal[
        "meeting", "commitment", "activity", "review", "appraisal", "decision", "document"
    ]
    min: int = Field(default=1, ge=1)
    subject: str | None = None
    label: str


class ActivityHeadings(_Strict):
    """At least `min_each` activities under every heading."""

    type: Literal["activity_headings"]
    headings: list[str] = Field(min_length=1)
    min_each: int = Field(default=1, ge=1)
    label: str = "活动"


class CommitmentShare(_Strict):
    """The share of members with a commitment is at least `min_share`; optionally a branch one."""

    type: Literal["commitment_share"]
    min_share: float = Field(gt=0, le=1)
    branch_commitment: bool = True


class ReviewPresent(_Strict):
    """A superior's review is recorded."""

    type: Literal["review_present"]
    min: int = Field(default=1, ge=1)


class AppraisalCount(_Strict):
    """At least `min` appraisal responses, or `min_member_ratio` × members if that is larger."""

    type: Literal["appraisal_count"]
    min: int = Field(default=1, ge=1)
    min_member_ratio: float = Field(default=0, ge=0, le=10)


class DecisionRecorded(_Strict):
    """A decision (grade or commendation) is recorded."""

    type: Literal["decision_recorded"]
    needs_grade: bool = False


Requirement = Annotated[
    EvidenceCount
    | ActivityHeadings
    | CommitmentShare
    | ReviewPresent
    | AppraisalCount
    | DecisionRecorded,
    Field(discriminator="type"),
]


class Duration(_Strict):
    """A default stage duration: N days, calendar or working."""

    days: int = Field(ge=1, le=366)
    working: bool = True


class Phase(_Strict):
    """Dated phase window as month-day strings in the campaign's year (`MM-DD`)."""

    opens: str = Field(pattern=r"^\d{2}-\d{2}$")
    closes: str = Field(pattern=r"^\d{2}-\d{2}$")


class Stage(_Strict):
    """One stage of a template."""

    id: str
    name: str
    description: str = ""
    evidence: list[str] = Field(default_factory=list)
    requirements: list[Requirement] = Field(default_factory=list)
    duration: Duration | None = None
    phase: Phase | None = None
    owner: str = BRANCH

    @model_validator(mode="after")
    def _check(self) -> Stage:
        if self.owner not in OWNERS:
            raise ValueError(
                f"阶段 {self.id} 的 owner 不合法：{self.owner!r}（可选：{'、'.join(OWNERS)}）"
            )
        if not STAGE_ID.match(self.id) or self.id == DONE:
            raise ValueError(
                f"阶段 id 不合法：{self.id!r}（小写字母开头，仅含小写字母、数字、下划线）"
            )
        for kind in self.evidence:
            if kind not in EVIDENCE_KINDS:
                raise ValueError(f"未知的材料类型：{kind!r}")
        for req in self.requirements:
            needs = getattr(req, "kind", None) or _REQ_KIND.get(req.type)
            if needs and needs not in self.evidence:
                raise ValueError(f"阶段 {self.id} 的条件需要 {needs} 材料，但 evidence 未列出它")
        return self


_REQ_KIND = {
    "activity_headings": "activity",
    "commitment_share": "commitment",
    "review_present": "review",
    "appraisal_count": "appraisal",
    "decision_recorded": "decision",
}


class ChainStep(_Strict):
    """One approver in a chain: the n-th ancestor, or the nearest ancestor of a kind."""

    parent: int | None = Field(default=None, ge=1, le=10)
    nearest_kind: str | None = None

    @model_validator(mode="after")
    def _one(self) -> ChainStep:
        if (self.parent is None) == (self.nearest_kind is None):
            raise ValueError("审批链每一步须且只须给出 parent 或 nearest_kind 之一")
        if self.nearest_kind is not None and self.nearest_kind not in ORG_KINDS:
            raise ValueError(f"未知的组织类型：{self.nearest_kind!r}")
        return self


class Approval(_Strict):
    """Approval chains: a default, and overrides keyed by the stage being left."""

    default: list[ChainStep] = Field(min_length=1)
    by_stage: dict[str, list[ChainStep]] = Field(default_factory=dict)
    extension: list[ChainStep] = Field(default_factory=lambda: [ChainStep(parent=1)])
    sla_working_days: int = Field(default=3, ge=1)


class Reminders(_Strict):
    """Reminder offsets before a deadline."""

    offsets: list[int] = Field(default_factory=lambda: [3, 1])
    working_days: bool = True


class Escalation(_Strict):
    """The overdue ladder: level 1 the day after; level 2 after N more working days; level 3."""

    level2_after: int = Field(default=3, ge=1)
    level3_after: int = Field(default=5, ge=1)
    working_days: bool = True


class Template(_Strict):
    """A versioned campaign template."""

    key: str = Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")
    version: int = Field(ge=1)
    name: str
    description: str = ""
    source: str = ""
    participants: list[str] = Field(default_factory=lambda: ["党支部"])
    stages: list[Stage] = Field(min_length=1)
    headings: list[str] = Field(default_factory=list)
    grades: list[str] = Field(default_factory=list)
    approval: Approval
    reminders: Reminders = Field(default_factory=Reminders)
    escalation: Escalation = Field(default_factory=Escalation)

    @model_validator(mode="after")
    def _check(self) -> Template:
        ids = [s.id for s in self.stages]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"阶段 id 重复：{', '.join(dupes)}")
        unknown = sorted(set(self.approval.by_stage) - set(ids))
        if unknown:
            raise ValueError(f"approval.by_stage 引用了不存在的阶段：{', '.join(unknown)}")
        for kind in self.participants:
            if kind not in ORG_KINDS:
                raise ValueError(f"未知的组织类型：{kind!r}")
        for s in self.stages:
            if s.owner == "approver" and self.chain_for(s.id)[0].parent is None:
                raise ValueError(
                    f"阶段 {s.id} 由审批组织负责（owner: approver），其审批链第一步须为 parent"
                )
        return self

    def stage(self, stage_id: str) -> Stage:
        """Return the stage with `stage_id`; raise NotFound."""
        for s in self.stages:
            if s.id == stage_id:
                return s
        raise NotFound(f"模板 {self.key} 没有阶段 {stage_id}")

    @property
    def stage_ids(self) -> list[str]:
        return [s.id for s in self.stages]

    def stage_name(self, stage_id: str) -> str:
        return DONE_LABEL if stage_id == DONE else self.stage(stage_id).name

    def next_stage(self, stage_id: str) -> str:
        """Return the stage after `stage_id` (DONE after the last)."""
        ids = self.stage_ids
        i = ids.index(stage_id)
        return ids[i + 1] if i + 1 < len(ids) else DONE

    def chain_for(self, stage_id: str) -> list[ChainStep]:
        """Return the approval chain for leaving `stage_id`."""
        return self.approval.by_stage.get(stage_id, self.approval.default)

    def owner_of(self, stage_id: str) -> str:
        """Return who owes `stage_id`'s work (`branch` for DONE and unknown stages)."""
        return next((s.owner for s in self.stages if s.id == stage_id), BRANCH)

    @property
    def owed_stages(self) -> dict[str, str]:
        """Return {stage id: owner} of the stages whose work lies above the branch."""
        return {s.id: s.owner for s in self.stages if s.owner != BRANCH}

    @cached_property
    def _digest(self) -> str:
        data = self.model_dump(mode="json")
        for stage in data["stages"]:  # a default owner leaves older versions' digests as they were
            if stage.get("owner") == BRANCH:
                del stage["owner"]
        body = json.dumps(data, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()

    def digest(self) -> str:
        """Return a SHA-256 over the canonical definition (detects edits without a version bump)."""
        return self._digest


def _format_errors(path: Path, exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(根)"
        out.append({"file": path.name, "key": key, "message": err["msg"]})
    return out


def load_file(path: Path) -> Template:
    """Load and validate one YAML template; errors name the file and the key."""
    try:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"模板文件 {path.name} 不是合法的 YAML：{exc}") from exc
    if not isinstance(raw, dict):
        raise InvalidInput(f"模板文件 {path.name} 顶层必须是映射")
    try:
        return Template.model_validate(raw)
    except ValidationError as exc:
        errors = _format_errors(path, exc)
        summary = "; ".join(f"{e['file']}: {e['key']}: {e['message']}" for e in errors)
        raise InvalidInput(f"模板校验失败：{summary}", details=errors) from exc


@lru_cache(maxsize=1)
def builtin_templates() -> dict[str, Template]:
    """Return the shipped templates by key (the newest version of each)."""
    found: dict[str, Template] = {}
    for path in sorted(TEMPLATE_DIR.glob("*.yaml")):
        tpl = load_file(path)
        if tpl.key in found and found[tpl.key].version >= tpl.version:
            continue
        found[tpl.key] = tpl
    return found


def get_template(key: str) -> Template:
    """Return the shipped template with `key`; raise NotFound."""
    try:
        return builtin_templates()[key]
    except KeyError:
        keys = ", ".join(sorted(builtin_templates()))
        raise NotFound(f"没有这个模板：{key}（可选：{keys}）", details={"template": key}) from None


def from_definition(definition: dict[str, Any]) -> Template:
    """Rebuild a Template from a stored definition (a campaign's frozen version)."""
    return Template.model_validate(definition)

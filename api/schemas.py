"""Request and response bodies. Request bodies forbid unknown fields."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PlainSerializer

from states.evidence import (
    ActivityIn,
    AppraisalIn,
    CommitmentIn,
    DecisionIn,
    DocumentIn,
    MeetingIn,
    ReviewIn,
    SelfAssessmentIn,
)
from states.schedule import StageDeadline
from states.timeutil import to_local

#: Times go out in Asia/Shanghai with their offset, e.g. `2026-12-01T23:59:59+08:00`.
LocalTime = Annotated[
    dt.datetime,
    PlainSerializer(lambda v: to_local(v).isoformat(), return_type=str, when_used="json"),
]

T = TypeVar("T")


class In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(Out, Generic[T]):
    items: list[T]
    total: int = Field(description="符合条件的总条数")
    limit: int
    offset: int


# --- auth ------------------------------------------------------------------------------------


class TokenIn(In):
    username: str = Field(min_length=1, max_length=64, description="用户名")
    password: str = Field(min_length=1, max_length=200, description="密码")


class TokenOut(Out):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_at: LocalTime
    expires_in: int = Field(description="有效秒数")


class OrgBrief(Out):
    id: int
    code: str
    name: str
    kind: str


class OrgOut(OrgBrief):
    parent_id: int | None
    path: str
    depth: int
    member_count: int
    secretary_name: str | None = None
    contact: str | None = None


class GrantOut(Out):
    org: OrgBrief
    role: str
    role_label: str


class MeOut(Out):
    id: int
    username: str
    display_name: str
    grants: list[GrantOut]
    reach: list[OrgBrief] = Field(description="可管辖的组织（各自连同其下级，书记仅本组织）")


# --- organisations ---------------------------------------------------------------------------


class ImportOut(Out):
    created: int
    updated: int
    unchanged: int


# --- templates --------------------------------------------------------------------------------


class RequirementOut(Out):
    type: str
    label: str
    spec: dict[str, Any]


class StageOut(Out):
    id: str
    name: str
    description: str
    evidence: list[str]
    requirements: list[RequirementOut]
    default_deadline: dict[str, Any] | None = Field(description="默认期限（日期或天数）")


class TransitionOut(Out):
    trigger: str
    label: str
    source: str
    dest: str


class TemplateSummary(Out):
    key: str
    version: int
    name: str
    description: str
    participants: list[str]
    stages: list[str]


class TemplateOut(TemplateSummary):
    digest: str
    source: str
    stage_details: list[StageOut]
    transitions: list[TransitionOut]
    headings: list[str]
    grades: list[str]
    approval: dict[str, Any]
    reminders: dict[str, Any]
    escalation: dict[str, Any]


# --- campaigns --------------------------------------------------------------------------------


class CampaignIn(In):
    template: str = Field(min_length=1, max_length=64, description="模板 key")
    root_org_id: int = Field(ge=1, le=2_147_483_647, description="发起组织（活动覆盖其下级）")
    kinds: list[str] | None = Field(
        default=None, max_length=4, description="参与的组织类型，缺省用模板的设定"
    )
    schedule: dict[str, StageDeadline] | None = Field(
        default=None, description="各阶段期限：{阶段: {date|working_days|days}}"
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    allow_past: bool = Field(
        default=False,
        description="日程中有截止日期已过的阶段时仍然发起（否则 422 并列出这些阶段）",
    )


class PreviewOut(Out):
    runs: int = Field(description="将创建的创建进度数")
    root: OrgBrief
    kinds: list[str]


class StageCountOut(Out):
    stage: str
    name: str
    runs: int
    overdue: int
    waiting: int


class CampaignOut(Out):
    id: int
    name: str
    template: str
    template_version: int
    root: OrgBrief
    kinds: list[str]
    schedule: dict[str, Any]
    launched_at: LocalTime
    scope: list[str] = Field(description="调用者可见的范围（组织路径）")
    total: int
    stages: list[StageCountOut]
    overdue: int
    overdue_by_holder: dict[str, int] = Field(
        default_factory=dict,
        description="逾期按谁在办拆分：branch 支部逾期、approver 审批逾期、above 上级逾期",
    )
    waiting: int
    done: int
    percent_done: float


class CampaignBrief(Out):
    id: int
    name: str
    template: str
    root: OrgBrief
    run_count: int
    launched_at: LocalTime


# --- runs ------------------------------------------------------------------------------------


class RunBrief(Out):
    id: int
    campaign_id: int
    org: OrgBrief
    stage: str
    stage_name: str
    entered_at: LocalTime
    deadline: LocalTime | None
    overdue: bool
    days_left: int | None = Field(description="距截止的天数（按上海日期；负数为已逾期）")
    pending_request_id: int | None
    escalation_level: int
    completed_at: LocalTime | None
    holder: str | None = Field(
        default=None, description="谁在办：支部办理中、待某组织审批 · 已 N 个工作日、待上级点评等"
    )


class CheckItem(Out):
    key: str
    label: str
    met: bool
    reason: str
    have: int
    need: int


class StepOut(Out):
    id: str
    name: str
    status: Literal["done", "current", "todo"]


class UserBrief(Out):
    id: int
    display_name: str


class DecisionOut(Out):
    step: int
    org_id: int
    decided_by: UserBrief
    outcome: str
    opinion: str | None
    created_at: LocalTime


class RequestOut(Out):
    id: int
    run_id: int
    kind: str
    from_stage: str
    to_stage: str | None
    status: str
    status_label: str
    chain: list[OrgBrief]
    step: int
    current_approver: OrgBrief | None
    requested_by: UserBrief
    on_behalf: bool
    comment: str | None
    requested_deadline: LocalTime | None
    return_reason: str | None
    submitted_at: LocalTime
    decided_at: LocalTime | None
    decisions: list[DecisionOut]


class RunOut(RunBrief):
    version: int
    campaign: CampaignBrief
    deadline_text: str = Field(description="截止时间（上海时间，文字）")
    timeline: list[StepOut]
    checklist: list[CheckItem]
    pending_request: RequestOut | None
    allowed_actions: list[str]


class ApprovalItem(Out):
    request: RequestOut
    run: RunBrief
    campaign_name: str


class HistoryItem(Out):
    seq: int
    at: LocalTime
    action: str
    actor: UserBrief | None
    data: dict[str, Any]


# --- evidence ---------------------------------------------------------------------------------


class _EvidenceIn(In):
    pass


class MeetingEvidence(_EvidenceIn):
    kind: Literal["meeting"]
    data: MeetingIn


class CommitmentEvidence(_EvidenceIn):
    kind: Literal["commitment"]
    data: CommitmentIn


class ActivityEvidence(_EvidenceIn):
    kind: Literal["activity"]
    data: ActivityIn


class ReviewEvidence(_EvidenceIn):
    kind: Literal["review"]
    data: ReviewIn


class AppraisalEvidence(_EvidenceIn):
    kind: Literal["appraisal"]
    data: AppraisalIn


class DecisionEvidence(_EvidenceIn):
    kind: Literal["decision"]
    data: DecisionIn


class DocumentEvidence(_EvidenceIn):
    kind: Literal["document"]
    data: DocumentIn


class SelfAssessmentEvidence(_EvidenceIn):
    kind: Literal["self_assessment"]
    data: SelfAssessmentIn


EvidenceIn = Annotated[
    MeetingEvidence
    | CommitmentEvidence
    | ActivityEvidence
    | ReviewEvidence
    | AppraisalEvidence
    | DecisionEvidence
    | DocumentEvidence
    | SelfAssessmentEvidence,
    Field(discriminator="kind"),
]


class EvidenceOut(Out):
    id: int
    org_id: int
    run_id: int | None = Field(description="首次录入时所在的进度")
    stage: str | None = Field(description="首次录入时所在的阶段")
    kind: str
    subject: str | None
    data: dict[str, Any]
    recorded_by: int | None
    on_behalf: bool
    created_at: LocalTime
    status: str = Field(description="active 有效；void 已作废（不再计入条件）")
    version: int = Field(description="每次更正加 1")
    amended_at: LocalTime | None
    voided_at: LocalTime | None
    void_reason: str | None


class EvidenceBatchIn(In):
    items: list[EvidenceIn] = Field(min_length=1, max_length=500, description="至多 500 项")


class EvidenceBatchOut(Out):
    ids: list[int] = Field(description="新建材料的编号，与 items 顺序一致")


class EvidenceLinkIn(In):
    evidence_id: int = Field(ge=1, description="本组织已有材料的编号")


class EvidenceLinkOut(Out):
    evidence_id: int
    run_id: int
    stage: str
    linked_at: LocalTime


class VoidIn(In):
    reason: str = Field(min_length=1, max_length=500, description="作废理由（必填）")


class AmendIn(In):
    data: dict[str, Any] = Field(description="更正后的完整内容（类型不变，按该类型校验）")
    reason: str | None = Field(default=None, max_length=500, description="更正说明（可选）")


class RevisionOut(Out):
    version: int = Field(description="被替换的版本号")
    subject: str | None
    data: dict[str, Any]
    replaced_by: int | None
    replaced_at: LocalTime
    reason: str | None


class UseOut(Out):
    run_id: int
    stage: str
    stage_name: str
    campaign_id: int
    campaign: str
    open: bool = Field(description="该阶段是否仍在进行（进行中才可更正）")


class EvidenceDetail(EvidenceOut):
    revisions: list[RevisionOut] = Field(description="更正前的各版本内容，旧的在前")
    uses: list[UseOut] = Field(description="计入哪些进度的哪些阶段")
    may_correct: bool = Field(description="调用者能否作废或更正")


# --- requests ---------------------------------------------------------------------------------


class AdvanceIn(In):
    comment: str | None = Field(default=None, max_length=2000, description="说明（可选）")


class ExtensionIn(In):
    new_deadline: AwareDatetime = Field(description="新的截止时间（须带时区）")
    reason: str = Field(min_length=1, max_length=2000, description="延期理由")


class ApproveIn(In):
    opinion: str | None = Field(default=None, max_length=2000, description="审批意见（可选）")


class ReturnIn(In):
    reason: str = Field(min_length=1, max_length=2000, description="退回意见（必填）")
    to_stage: str | None = Field(
        default=None, max_length=64, description="同时把创建进度退回到此前的某一阶段（可选）"
    )


class SendBackIn(In):
    to_stage: str = Field(min_length=1, max_length=64)
    reason: str = Field(min_length=1, max_length=2000)


# --- notifications ----------------------------------------------------------------------------


class NotificationOut(Out):
    id: int
    kind: str
    title: str
    body: str
    run_id: int | None
    org_id: int | None
    created_at: LocalTime
    read_at: LocalTime | None
    request_id: int | None = Field(None, description="所涉申请（待审批、审批结果等）")
    resolved_at: LocalTime | None = Field(
        None, description="事项已办结的时间（如申请已审批或撤回、已离开逾期阶段）；此后不计未读"
    )
    link: str | None = Field(None, description="打开此消息所涉页面的本站路径，如 /runs/7")


class NotificationPage(Page[NotificationOut]):
    unread: int


class ReadAllOut(Out):
    count: int = Field(description="本次标为已读的条数")

"""Tables: organisations, users and grants, campaigns, runs, evidence, requests, audit, outbox."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Index, String, UniqueConstraint, func
from sqlalchemy import column as sa_column
from sqlmodel import Field, SQLModel

from states.timeutil import UTCDateTime, utcnow

# Materialised paths compare byte-wise: "C" collation on PostgreSQL, BINARY (the default) on SQLite.
PathString = String(512).with_variant(String(512, collation="C"), "postgresql")


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json() -> Any:
    return Field(default_factory=dict, sa_type=JSON, nullable=False)


class OrgKind(StrEnum):
    """Kinds of organisation, in the order they nest."""

    COMMITTEE = "党委"
    GENERAL_BRANCH = "党总支"
    BRANCH = "党支部"
    GROUP = "党小组"


#: Kind names in nesting order; the one list every module checks against.
ORG_KINDS: tuple[str, ...] = tuple(k.value for k in OrgKind)


class Role(StrEnum):
    """Roles a user may hold on an organisation."""

    SECRETARY = "secretary"
    COMMITTEE = "committee"
    ORGANISER = "organiser"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


ROLE_LABELS: dict[Role, str] = {
    Role.SECRETARY: "书记",
    Role.COMMITTEE: "委员",
    Role.ORGANISER: "组织员",
    Role.SUPERVISOR: "督导",
    Role.ADMIN: "管理员",
}

#: Roles whose grant on an organisation covers its whole subtree.
SUBTREE_ROLES = frozenset({Role.COMMITTEE, Role.ORGANISER, Role.SUPERVISOR, Role.ADMIN})


class Organisation(SQLModel, table=True):
    """One grassroots organisation; `path` is the materialised path of codes, `/A/B/C/`."""

    __tablename__ = "organisation"
    # Codes are unique whatever their case: `jt01` and `JT01` name the same organisation.
    __table_args__ = (Index("uq_organisation_code_ci", func.lower(sa_column("code")), unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(sa_type=String(64), unique=True, nullable=False)
    name: str = Field(sa_type=String(200), nullable=False)
    kind: str = Field(sa_type=String(16), nullable=False)
    parent_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    path: str = Field(sa_type=PathString, nullable=False, index=True)
    depth: int = Field(default=0, nullable=False)
    member_count: int = Field(default=0, nullable=False)
    secretary_name: str | None = Field(default=None, sa_type=String(100))
    contact: str | None = Field(default=None, sa_type=String(200))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class User(SQLModel, table=True):
    """A person who logs in."""

    __tablename__ = "app_user"

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_type=String(64), unique=True, nullable=False)
    display_name: str = Field(sa_type=String(100), nullable=False)
    password_hash: str = Field(sa_type=String(200), nullable=False)
    email: str | None = Field(default=None, sa_type=String(200))
    is_active: bool = Field(default=True, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    phone: str | None = Field(default=None, sa_type=String(20))
    # Set for an initial or reset password: the next log-in must choose a new one.
    must_change_password: bool = Field(default=False, nullable=False)
    password_changed_at: datetime | None = _ts(nullable=True)


class Grant(SQLModel, table=True):
    """A role a user holds on an organisation."""

    __tablename__ = "role_grant"
    __table_args__ = (UniqueConstraint("user_id", "org_id", "role", name="uq_grant"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", index=True, nullable=False)
    org_id: int = Field(foreign_key="organisation.id", index=True, nullable=False)
    role: str = Field(sa_type=String(16), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class TemplateVersion(SQLModel, table=True):
    """The frozen definition of a template version, kept for every campaign launched on it."""

    __tablename__ = "template_version"
    __table_args__ = (UniqueConstraint("key", "version", name="uq_template_version"),)

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=String(64), nullable=False)
    version: int = Field(nullable=False)
    name: str = Field(sa_type=String(200), nullable=False)
    digest: str = Field(sa_type=String(64), nullable=False)
    definition: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Campaign(SQLModel, table=True):
    """One launch of a template over an organisation's subtree."""

    __tablename__ = "campaign"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_type=String(200), nullable=False)
    template_version_id: int = Field(foreign_key="template_version.id", nullable=False)
    template_key: str = Field(sa_type=String(64), nullable=False, index=True)
    template_version: int = Field(nullable=False)
    root_org_id: int = Field(foreign_key="organisation.id", nullable=False, index=True)
    kinds: list[str] = Field(default_factory=list, sa_type=JSON, nullable=False)
    schedule: dict[str, Any] = _json()
    status: str = Field(default="active", sa_type=String(16), nullable=False)
    run_count: int = Field(default=0, nullable=False)
    launched_by: int | None = Field(default=None, foreign_key="app_user.id")
    launched_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Run(SQLModel, table=True):
    """One organisation's state machine inside one campaign."""

    __tablename__ = "run"
    __table_args__ = (
        UniqueConstraint("campaign_id", "org_id", name="uq_run_campaign_org"),
        Index("ix_run_campaign_stage", "campaign_id", "stage"),
        Index("ix_run_deadline", "deadline"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", nullable=False)
    org_id: int = Field(foreign_key="organisation.id", nullable=False, index=True)
    stage: str = Field(sa_type=String(64), nullable=False)
    entered_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    deadline: datetime | None = _ts(nullable=True)
    version: int = Field(default=1, nullable=False)
    pending_request_id: int | None = Field(default=None)
    escalation_level: int = Field(default=0, nullable=False)
    completed_at: datetime | None = _ts(nullable=True)
    # The head of the run's audit stream (`run:<id>`): its last seq and hash (None: genesis),
    # so a command appends its event without reading the log.
    audit_seq: int = Field(default=0, nullable=False, sa_column_kwargs={"server_default": "0"})
    audit_hash: str | None = Field(default=None, sa_type=String(64), nullable=True)


class EvidenceKind(StrEnum):
    """Kinds of evidence a run records for a stage."""

    MEETING = "meeting"
    COMMITMENT = "commitment"
    ACTIVITY = "activity"
    REVIEW = "review"
    APPRAISAL = "appraisal"
    DECISION = "decision"
    DOCUMENT = "document"
    SELF_ASSESSMENT = "self_assessment"


class Evidence(SQLModel, table=True):
    """A typed record of something an organisation did, entered once and used by many runs.

    `org_id` owns it; `run_id`/`stage` say where it was first recorded (kept for history);
    the stages it counts for are its `EvidenceLink` rows. It is never deleted: a correction
    amends it (the old contents go to `EvidenceRevision`) or voids it (it stops counting).
    """

    __tablename__ = "evidence"
    __table_args__ = (
        Index("ix_evidence_run_stage_kind", "run_id", "stage", "kind"),
        Index("ix_evidence_org_kind_created", "org_id", "kind", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    stage: str | None = Field(default=None, sa_type=String(64))
    kind: str = Field(sa_type=String(16), nullable=False)
    subject: str | None = Field(default=None, sa_type=String(200))
    data: dict[str, Any] = _json()
    recorded_by: int | None = Field(default=None, foreign_key="app_user.id")
    recorder_org_id: int | None = Field(default=None, foreign_key="organisation.id")
    on_behalf: bool = Field(default=False, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    status: str = Field(default="active", sa_type=String(8), nullable=False)  # active | void
    version: int = Field(default=1, nullable=False)
    amended_at: datetime | None = _ts(nullable=True)
    voided_at: datetime | None = _ts(nullable=True)
    voided_by: int | None = Field(default=None, foreign_key="app_user.id")
    void_reason: str | None = Field(default=None, sa_type=String(500))


class EvidenceLink(SQLModel, table=True):
    """One use of a record: it counts for this run's stage."""

    __tablename__ = "evidence_link"
    __table_args__ = (
        UniqueConstraint("evidence_id", "run_id", "stage", name="uq_evidence_link"),
        Index("ix_evidence_link_run_stage", "run_id", "stage"),
    )

    id: int | None = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", nullable=False)
    run_id: int = Field(foreign_key="run.id", nullable=False)
    stage: str = Field(sa_type=String(64), nullable=False)
    linked_by: int | None = Field(default=None, foreign_key="app_user.id")
    linked_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class EvidenceRevision(SQLModel, table=True):
    """The contents a record had before an amendment (version `version`)."""

    __tablename__ = "evidence_revision"
    __table_args__ = (UniqueConstraint("evidence_id", "version", name="uq_evidence_revision"),)

    id: int | None = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", nullable=False)
    version: int = Field(nullable=False)
    subject: str | None = Field(default=None, sa_type=String(200))
    data: dict[str, Any] = _json()
    replaced_by: int | None = Field(default=None, foreign_key="app_user.id")
    replaced_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    reason: str | None = Field(default=None, sa_type=String(500))


class Attachment(SQLModel, table=True):
    """A file carried by a record, stored content-addressed (SHA-256) under the data directory."""

    __tablename__ = "attachment"

    id: int | None = Field(default=None, primary_key=True)
    evidence_id: int = Field(foreign_key="evidence.id", nullable=False, index=True)
    sha256: str = Field(sa_type=String(64), nullable=False)
    size: int = Field(nullable=False)
    content_type: str = Field(sa_type=String(100), nullable=False)
    filename: str = Field(sa_type=String(200), nullable=False)
    thumb_sha256: str | None = Field(default=None, sa_type=String(64))
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class RequestKind(StrEnum):
    ADVANCE = "advance"
    EXTENSION = "extension"


class RequestStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    RETURNED = "returned"
    WITHDRAWN = "withdrawn"


class Request(SQLModel, table=True):
    """A request to advance a run (or extend its deadline) walking its approval chain."""

    __tablename__ = "request"
    __table_args__ = (Index("ix_request_status_approver", "status", "current_approver_org_id"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False, index=True)
    kind: str = Field(sa_type=String(16), nullable=False)
    from_stage: str = Field(sa_type=String(64), nullable=False)
    to_stage: str | None = Field(default=None, sa_type=String(64))
    status: str = Field(default=RequestStatus.PENDING, sa_type=String(16), nullable=False)
    chain: list[int] = Field(default_factory=list, sa_type=JSON, nullable=False)
    step: int = Field(default=0, nullable=False)
    current_approver_org_id: int | None = Field(default=None, foreign_key="organisation.id")
    requested_by: int = Field(foreign_key="app_user.id", nullable=False)
    on_behalf: bool = Field(default=False, nullable=False)
    comment: str | None = Field(default=None, sa_type=String(2000))
    requested_deadline: datetime | None = _ts(nullable=True)
    return_reason: str | None = Field(default=None, sa_type=String(2000))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    submitted_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    decided_at: datetime | None = _ts(nullable=True)


class Decision(SQLModel, table=True):
    """One approver's decision on one step of a request."""

    __tablename__ = "decision"
    __table_args__ = (UniqueConstraint("request_id", "step", name="uq_decision_step"),)

    id: int | None = Field(default=None, primary_key=True)
    # Looked up by `uq_decision_step` (request_id leads it): no index of its own to keep up.
    request_id: int = Field(foreign_key="request.id", nullable=False)
    step: int = Field(nullable=False)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    decided_by: int = Field(foreign_key="app_user.id", nullable=False)
    outcome: str = Field(sa_type=String(16), nullable=False)
    opinion: str | None = Field(default=None, sa_type=String(2000))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class AuditEvent(SQLModel, table=True):
    """An append-only, hash-chained record; each stream (`run:12`, `org`) is its own chain."""

    __tablename__ = "audit_event"
    __table_args__ = (UniqueConstraint("stream", "seq", name="uq_audit_stream_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    stream: str = Field(sa_type=String(64), nullable=False)
    seq: int = Field(nullable=False)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor_id: int | None = Field(default=None)
    action: str = Field(sa_type=String(64), nullable=False)
    run_id: int | None = Field(default=None)  # a run's events are read by their stream
    data: dict[str, Any] = _json()
    prev_hash: str = Field(sa_type=String(64), nullable=False)
    hash: str = Field(sa_type=String(64), nullable=False)


class OutboxMessage(SQLModel, table=True):
    """A notice to deliver, written in the same transaction as the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(sa_type=String(200), unique=True, nullable=False)
    event_kind: str = Field(sa_type=String(64), nullable=False)
    run_id: int | None = Field(default=None)  # read with its row, never searched by
    org_id: int | None = Field(default=None)
    payload: dict[str, Any] = _json()
    status: str = Field(default="pending", sa_type=String(16), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # Set while a relay works on the row; another relay may take it over once it has passed.
    locked_until: datetime | None = _ts(nullable=True)
    done_at: datetime | None = _ts(nullable=True)
    last_error: str | None = Field(default=None, sa_type=String(500))


class CalendarOverride(SQLModel, table=True):
    """A day whose working status overrides the published calendar."""

    __tablename__ = "calendar_override"

    day: date = Field(primary_key=True)
    is_workday: bool = Field(nullable=False)
    note: str | None = Field(default=None, sa_type=String(200))


class ApiToken(SQLModel, table=True):
    """An opaque bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_token"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(sa_type=String(64), unique=True, nullable=False)
    user_id: int = Field(foreign_key="app_user.id", index=True, nullable=False)
    label: str = Field(default="api", sa_type=String(16), nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    expires_at: datetime = Field(sa_type=UTCDateTime, nullable=False, index=True)
    revoked_at: datetime | None = _ts(nullable=True)


class LoginFailure(SQLModel, table=True):
    """A failed log-in, kept for the rate limit's window (per user name and per client)."""

    __tablename__ = "login_failure"
    __table_args__ = (
        Index("ix_login_failure_username_at", "username", "at"),
        Index("ix_login_failure_client_at", "client", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(sa_type=String(64), nullable=False)
    client: str = Field(sa_type=String(64), nullable=False)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class IdempotencyRecord(SQLModel, table=True):
    """The first response to a state-changing POST with an `Idempotency-Key`, kept 24 hours."""

    __tablename__ = "idempotency_key"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_user_key"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", nullable=False)
    key: str = Field(sa_type=String(200), nullable=False)
    request_hash: str = Field(sa_type=String(64), nullable=False)
    status: str = Field(default="in_flight", sa_type=String(16), nullable=False)
    response_status: int | None = Field(default=None)
    response_body: Any = Field(default=None, sa_type=JSON, nullable=True)
    created_at: datetime = Field(
        default_factory=utcnow, sa_type=UTCDateTime, nullable=False, index=True
    )


class InboxItem(SQLModel, table=True):
    """A notice in one user's in-app inbox (站内消息)."""

    __tablename__ = "inbox_item"
    __table_args__ = (
        UniqueConstraint("outbox_id", "user_id", name="uq_inbox_outbox_user"),
        Index("ix_inbox_user_read", "user_id", "read_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", nullable=False)
    outbox_id: int | None = Field(default=None)
    kind: str = Field(sa_type=String(64), nullable=False)
    title: str = Field(sa_type=String(200), nullable=False)
    body: str = Field(default="", sa_type=String(4000), nullable=False)
    run_id: int | None = Field(default=None, index=True)  # a run's notices resolve by it
    org_id: int | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    read_at: datetime | None = _ts(nullable=True)
    # The request a 待审批/督办 notice is about, and when its work was done (it resolves itself).
    request_id: int | None = Field(default=None, index=True)
    resolved_at: datetime | None = _ts(nullable=True)


class StockOpinion(SQLModel, table=True):
    """A committee's stock opinion (常用意见) for approving or returning requests."""

    __tablename__ = "stock_opinion"
    __table_args__ = (UniqueConstraint("org_id", "text", name="uq_stock_opinion"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    text: str = Field(sa_type=String(200), nullable=False)
    created_by: int | None = Field(default=None, foreign_key="app_user.id")
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class ChannelKind(StrEnum):
    """Organisation-level delivery channels (group robots and a generic webhook)."""

    WECOM = "wecom"
    DINGTALK = "dingtalk"
    FEISHU = "feishu"
    WEBHOOK = "webhook"


class OrgChannel(SQLModel, table=True):
    """A robot or webhook an organisation receives its notices through."""

    __tablename__ = "org_channel"
    __table_args__ = (UniqueConstraint("org_id", "kind", "url", name="uq_org_channel"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", index=True, nullable=False)
    kind: str = Field(sa_type=String(16), nullable=False)
    # A full URL, or for robots only the key / access token / hook id (joined to the base URL).
    url: str = Field(sa_type=String(500), nullable=False)
    secret: str | None = Field(default=None, sa_type=String(200))
    enabled: bool = Field(default=True, nullable=False)
    # Quiet hours in Asia/Shanghai, "HH:MM-HH:MM" (may wrap midnight); None: none.
    quiet_hours: str | None = Field(default=None, sa_type=String(11))
    escalations_in_quiet: bool = Field(default=True, nullable=False)
    paused_until: datetime | None = _ts(nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class NotifyOptOut(SQLModel, table=True):
    """A user who does not want notices through a channel (e-mail); the inbox always gets them."""

    __tablename__ = "notify_optout"
    __table_args__ = (UniqueConstraint("user_id", "channel", name="uq_notify_optout"),)

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="app_user.id", nullable=False)
    channel: str = Field(sa_type=String(16), nullable=False)


class Delivery(SQLModel, table=True):
    """One notice through one channel to one target, with its stable message id and result."""

    __tablename__ = "delivery"
    __table_args__ = (
        UniqueConstraint("outbox_id", "channel", "target", name="uq_delivery"),
        Index("ix_delivery_outbox_status", "outbox_id", "status"),
        Index("ix_delivery_robot_sent", "channel", "target", "sent_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    outbox_id: int = Field(nullable=False)
    channel: str = Field(sa_type=String(16), nullable=False)
    # "user:12" (inbox), an e-mail address, or "org_channel:5" (robots, webhooks).
    target: str = Field(sa_type=String(200), nullable=False)
    message_id: str = Field(sa_type=String(64), unique=True, nullable=False)
    status: str = Field(default="pending", sa_type=String(16), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    last_error: str | None = Field(default=None, sa_type=String(500))
    sent_at: datetime | None = _ts(nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class NoticeTemplate(SQLModel, table=True):
    """An organisation's own wording for one kind of notice (applies to its whole subtree)."""

    __tablename__ = "notice_template"
    __table_args__ = (UniqueConstraint("org_id", "event_kind", name="uq_notice_template"),)

    id: int | None = Field(default=None, primary_key=True)
    org_id: int = Field(foreign_key="organisation.id", nullable=False)
    event_kind: str = Field(sa_type=String(64), nullable=False)
    source: str = Field(sa_type=String(8000), nullable=False)
    updated_by: int | None = Field(default=None, foreign_key="app_user.id")
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    # The last time this wording failed at send time (the built-in wording was used instead).
    last_error: str | None = Field(default=None, sa_type=String(500))
    last_error_at: datetime | None = _ts(nullable=True)
    failures: int = Field(default=0, nullable=False)


class TimerFired(SQLModel, table=True):
    """A reminder, escalation or phase notice that has fired: its unique key makes it once, ever.

    `kind` is reminder / overdue / approval_sla / phase_open; `level` is the reminder's offset in
    days, the escalation level or the phase's position; `due` is the instant the timer chases (the
    deadline; for an approval, when the wait began), so an extended deadline starts a new ladder
    while no sweep, retried or concurrent, can fire the same one twice; `ref` tells approval steps
    apart (`request/step`).
    """

    __tablename__ = "timer_fired"
    __table_args__ = (
        UniqueConstraint("run_id", "stage", "kind", "level", "due", "ref", name="uq_timer_fired"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", nullable=False)
    stage: str = Field(sa_type=String(64), nullable=False)
    kind: str = Field(sa_type=String(16), nullable=False)
    level: int = Field(nullable=False)
    due: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ref: str = Field(default="", sa_type=String(32), nullable=False)
    campaign_id: int = Field(foreign_key="campaign.id", nullable=False, index=True)
    as_of: datetime = Field(sa_type=UTCDateTime, nullable=False)
    fired_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Bulletin(SQLModel, table=True):
    """A committee's weekly bulletin (简报) for one campaign, with its public-notice list."""

    __tablename__ = "bulletin"
    __table_args__ = (
        UniqueConstraint("campaign_id", "org_id", "period", name="uq_bulletin_period"),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", nullable=False)
    org_id: int = Field(foreign_key="organisation.id", nullable=False, index=True)
    period: str = Field(sa_type=String(16), nullable=False)
    as_of: datetime = Field(sa_type=UTCDateTime, nullable=False)
    data: dict[str, Any] = _json()
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


# The roster lives in its own package; importing it here registers its table with the rest.
from states.board.models import BoardMessage, PublicBoard  # noqa: E402, F401
from states.calfeed.models import CalendarFeed  # noqa: E402, F401
from states.jobs.models import Job  # noqa: E402, F401
from states.members.models import Member  # noqa: E402, F401
from states.sso.models import SsoIdentity, SsoState  # noqa: E402, F401
from states.supervision.models import Circular, CircularItem, Finding  # noqa: E402, F401
from states.survey.models import Survey, SurveyAnswer, SurveyCode, SurveyHit  # noqa: E402, F401

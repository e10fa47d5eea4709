"""A branch's 台账 for one run: a cover (branch, campaign, stages with the dates they were entered
and approved and the approvers' opinions, the head of the run's audit chain), one sheet per stage
with its records and their attachments, attendance and commitments per member, and the history.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from sqlmodel import Session, col, select

from states.catalog import DONE
from states.ledger.cells import Sheet, unique_title
from states.ledger.records import ACTION_LABELS, KIND_LABELS, OUTCOME_LABELS, detail, summary
from states.machines import stage_label
from states.members.models import Member
from states.members.queries import active_members
from states.models import (
    Attachment,
    AuditEvent,
    Decision,
    Evidence,
    EvidenceLink,
    Organisation,
    Request,
    User,
)
from states.run_core import RunContext, load_run
from states.timeutil import format_local, utcnow
from states.users import Actor

VOID = "void"


@dataclass
class RunData:
    """Everything the workbook shows, loaded in a handful of queries."""

    ctx: RunContext
    events: list[AuditEvent]
    records: list[tuple[str, Evidence]]
    files: dict[int, list[Attachment]]
    decisions: list[tuple[Request, Decision, str]]
    members: list[Member]
    users: dict[int, str] = field(default_factory=dict)


def load(session: Session, run_id: int, actor: Actor | None) -> RunData:
    """The run within the actor's reach (NotFound otherwise) and what its 台账 shows."""
    ctx = load_run(session, run_id, actor)
    events = list(
        session.execute(
            select(AuditEvent)
            .where(AuditEvent.stream == f"run:{run_id}")
            .order_by(col(AuditEvent.seq))
        ).scalars()
    )
    records = [
        (stage, ev)
        for stage, ev in session.execute(
            select(EvidenceLink.stage, Evidence)
            .join(Evidence, col(Evidence.id) == col(EvidenceLink.evidence_id))
            .where(EvidenceLink.run_id == run_id)
            .order_by(col(Evidence.created_at), col(Evidence.id))
        ).all()
    ]
    data = RunData(ctx, events, records, _files(session, records), _decisions(session, run_id), [])
    data.members = active_members(session, ctx.org.id or 0)
    data.users = _names(session, data)
    return data


def _files(session: Session, records: list[tuple[str, Evidence]]) -> dict[int, list[Attachment]]:
    ids = {ev.id for _, ev in records}
    out: dict[int, list[Attachment]] = defaultdict(list)
    if ids:
        stmt = select(Attachment).where(col(Attachment.evidence_id).in_(ids))
        for a in session.execute(stmt.order_by(col(Attachment.id))).scalars():
            out[a.evidence_id].append(a)
    return out


def _decisions(session: Session, run_id: int) -> list[tuple[Request, Decision, str]]:
    rows = session.execute(
        select(Request, Decision, Organisation.name)
        .join(Decision, col(Decision.request_id) == col(Request.id))
        .join(Organisation, col(Organisation.id) == col(Decision.org_id))
        .where(Request.run_id == run_id)
        .order_by(col(Decision.created_at), col(Decision.id))
    ).all()
    return [(r, d, n) for r, d, n in rows]


def _names(session: Session, data: RunData) -> dict[int, str]:
    ids = {e.actor_id for e in data.events if e.actor_id}
    ids |= {ev.recorded_by for _, ev in data.records if ev.recorded_by}
    ids |= {d.decided_by for _, d, _ in data.decisions}
    if not ids:
        return {}
    stmt = select(User.id, User.display_name).where(col(User.id).in_(ids))
    return {int(i): n for i, n in session.execute(stmt).all()}


def file_name(data: RunData) -> str:
    """The workbook's file name: 台账-<branch>-<campaign>.xlsx."""
    raw = f"台账-{data.ctx.org.name}-{data.ctx.campaign.name}.xlsx"
    return "".join("_" if ch in '\\/:*?"<>|' else ch for ch in raw)


def write(data: RunData, out: Path | IO[bytes], *, base_url: str = "") -> None:
    """Write the workbook to `out` (write-only mode)."""
    book = Workbook(write_only=True)
    fill(book, data, base_url=base_url)
    book.save(out)


def fill(book: Workbook, data: RunData, *, base_url: str = "", prefix: str = "") -> None:
    """Add the run's sheets to `book` (names prefixed by `prefix`)."""
    taken: set[str] = {ws.title.lower() for ws in book.worksheets}
    cover(book, data, unique_title(prefix + "封面", taken))
    for stage in data.ctx.tpl.stages:
        name = unique_title(f"{prefix}{stage.name}", taken)
        stage_sheet(book, data, stage.id, name, base_url)
    attendance(book, data, unique_title(prefix + "出勤", taken))
    commitments(book, data, unique_title(prefix + "承诺", taken))
    history(book, data, unique_title(prefix + "历史", taken))


def _stage_times(data: RunData) -> tuple[dict[str, Any], dict[str, Any]]:
    """When each stage was last entered and approved, from the run's audit chain."""
    entered: dict[str, Any] = {data.ctx.tpl.stage_ids[0]: data.ctx.campaign.launched_at}
    approved: dict[str, Any] = {}
    for e in data.events:
        d = e.data or {}
        if e.action in ("stage.advanced", "run.sent_back") and d.get("to_stage"):
            entered[str(d["to_stage"])] = e.at
        if e.action == "stage.advanced" and d.get("from_stage"):
            approved[str(d["from_stage"])] = e.at
    entered[data.ctx.run.stage] = data.ctx.run.entered_at
    return entered, approved


def _opinions(data: RunData) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for req, dec, org_name in data.decisions:
        who = data.users.get(dec.decided_by, "")
        verdict = OUTCOME_LABELS.get(dec.outcome, dec.outcome)
        line = f"{org_name} {who}（{verdict}，{format_local(dec.created_at)}）"
        out[req.from_stage].append(line + (f"：{dec.opinion}" if dec.opinion else ""))
    return out


def cover(book: Workbook, data: RunData, name: str) -> None:
    """The cover: who, what, where the run stands, its stages and its audit head."""
    ctx = data.ctx
    sheet = Sheet(
        book, name, [("项目", 18), ("内容", 24), ("", 24), ("", 70)], title="创建活动台账"
    )
    head = ctx.run.audit_hash or "（尚无事件）"
    for label, value in (
        ("组织", f"{ctx.org.name}（{ctx.org.code}）"),
        ("活动", ctx.campaign.name),
        ("模板", f"{ctx.tpl.name}（第 {ctx.campaign.template_version} 版）"),
        ("当前阶段", stage_label(ctx.tpl, ctx.run.stage)),
        ("截止日期", ctx.run.deadline or "无期限"),
        ("导出时间", utcnow()),
        ("审计链", f"run:{ctx.run.id}，共 {ctx.run.audit_seq} 条事件"),
        ("审计链末条哈希", head),
        (
            "核对方法",
            "在服务器运行 dangjian audit verify 确认审计链完整，再核对本链末条哈希与此一致",
        ),
    ):
        sheet.append([label, value])
    sheet.blank()
    sheet.append(["阶段", "进入时间", "审批通过时间", "审批人与意见"])
    entered, approved = _stage_times(data)
    opinions = _opinions(data)
    for stage in ctx.tpl.stages:
        row = [stage.name, entered.get(stage.id), approved.get(stage.id)]
        sheet.wrapped([*row, "\n".join(opinions.get(stage.id, []))])
    if ctx.run.stage == DONE:
        sheet.append([stage_label(ctx.tpl, DONE), ctx.run.completed_at])


STAGE_HEADERS = [
    ("序号", 6),
    ("类型", 10),
    ("内容", 60),
    ("录入人", 12),
    ("录入时间", 17),
    ("状态", 8),
    ("附件", 30),
    ("附件链接", 40),
]


def stage_sheet(book: Workbook, data: RunData, stage: str, name: str, base_url: str) -> None:
    """One stage's records, each with its attachments' names and download addresses."""
    title = f"{data.ctx.org.name} · {stage_label(data.ctx.tpl, stage)}"
    sheet = Sheet(book, name, STAGE_HEADERS, title=title)
    n = 0
    for linked_stage, ev in data.records:
        if linked_stage != stage:
            continue
        n += 1
        files = data.files.get(ev.id or 0, [])
        sheet.wrapped(
            [
                n,
                KIND_LABELS.get(ev.kind, ev.kind),
                summary(ev.kind, ev.data),
                data.users.get(ev.recorded_by or 0, ""),
                ev.created_at,
                "已作废" if ev.status == VOID else "有效",
                "\n".join(a.filename for a in files),
                "\n".join(f"{base_url}/files/{a.id}" for a in files),
            ]
        )


def _active(data: RunData, kind: str) -> list[Evidence]:
    seen: set[int] = set()
    out = []
    for _, ev in data.records:
        if ev.kind == kind and ev.status != VOID and ev.id not in seen:
            seen.add(ev.id or 0)
            out.append(ev)
    return out


def attendance(book: Workbook, data: RunData, name: str) -> None:
    """Each member of the roster: meetings held, attended, missed and why."""
    headers = [("姓名", 12), ("类别", 10), ("会议数", 8), ("出席", 8), ("缺席", 8)]
    sheet = Sheet(book, name, [*headers, ("缺席情况", 60)], title="党员出勤")
    meetings = [ev for ev in _active(data, "meeting") if ev.data.get("attendees") is not None]
    for m in data.members:
        present = [ev for ev in meetings if m.id in ev.data.get("attendees", [])]
        missed = [_absence(ev, m.id or 0) for ev in meetings if ev not in present]
        row = [m.name, m.category, len(meetings), len(present), len(missed)]
        sheet.wrapped([*row, "\n".join(missed)])
    if not data.members:
        sheet.append(["（本支部尚无党员名册，会议出勤按应到、实到人数记录，见各阶段工作表）"])


def _absence(ev: Evidence, member_id: int) -> str:
    reason = next(
        (a.get("reason") for a in ev.data.get("absences", []) if a.get("member_id") == member_id),
        None,
    )
    return f"{ev.data.get('date', '')} {ev.data.get('title', '')}" + (
        f"（{reason}）" if reason else ""
    )


def commitments(book: Workbook, data: RunData, name: str) -> None:
    """Each member's commitments (and the branch's), members without one marked."""
    headers = [("承诺人", 14), ("承诺内容", 80), ("录入时间", 17)]
    sheet = Sheet(book, name, headers, title="公开承诺")
    by_member: dict[int, list[Evidence]] = defaultdict(list)
    others: list[Evidence] = []
    for ev in _active(data, "commitment"):
        mid = ev.data.get("member_id")
        (by_member[int(mid)] if mid else others).append(ev)
    for m in data.members:
        own = by_member.get(m.id or 0, [])
        for ev in own:
            sheet.wrapped([m.name, ev.data.get("text", ""), ev.created_at])
        if not own:
            sheet.append([m.name, "（未填写）"])
    for ev in others:
        who = ev.data.get("member") or "（支部）"
        sheet.wrapped([who, ev.data.get("text", ""), ev.created_at])


def history(book: Workbook, data: RunData, name: str) -> None:
    """The run's audit chain, oldest first, with each event's hash."""
    headers = [("序号", 6), ("时间", 17), ("操作", 28), ("操作人", 12), ("说明", 50)]
    sheet = Sheet(book, name, [*headers, ("哈希", 66)], title="创建进度历史（审计链）")
    for e in data.events:
        who = data.users.get(e.actor_id or 0, "系统")
        action = ACTION_LABELS.get(e.action, e.action)
        sheet.wrapped([e.seq, e.at, action, who, detail(e.data), e.hash])


BRANCH_HEADERS = [("阶段", 12), *STAGE_HEADERS[1:7], ("进入 / 通过时间", 34)]


def branch_sheet(book: Workbook, data: RunData, name: str, base_url: str = "") -> None:
    """One sheet for a branch in a committee's workbook: each stage's dates, then its records."""
    ctx = data.ctx
    title = f"{ctx.org.name}（{ctx.org.code}）· 当前阶段：{stage_label(ctx.tpl, ctx.run.stage)}"
    sheet = Sheet(book, name, BRANCH_HEADERS, title=title)
    entered, approved = _stage_times(data)
    opinions = _opinions(data)
    for stage in ctx.tpl.stages:
        when = f"进入 {format_local(entered.get(stage.id))}"
        if stage.id in approved:
            when += f"；通过 {format_local(approved[stage.id])}"
        sheet.wrapped([stage.name, "审批", "\n".join(opinions.get(stage.id, [])), *[""] * 4, when])
        for linked_stage, ev in data.records:
            if linked_stage == stage.id:
                sheet.wrapped([stage.name, *_record_row(data, ev, base_url)])


def _record_row(data: RunData, ev: Evidence, base_url: str) -> list[Any]:
    files = data.files.get(ev.id or 0, [])
    links = [f"{a.filename} {base_url}/files/{a.id}" for a in files]
    return [
        KIND_LABELS.get(ev.kind, ev.kind),
        summary(ev.kind, ev.data),
        data.users.get(ev.recorded_by or 0, ""),
        ev.created_at,
        "已作废" if ev.status == VOID else "有效",
        "\n".join(links),
    ]

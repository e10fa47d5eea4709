"""Bulk entry from the roster (党员名册): every member's commitment in one form, attendance ticked.

* `/runs/{id}/commitments` – one text box per 在册 member (and one for the branch), pre-filled
  and read-only where this run's stage already links a commitment. One form, three buttons:
  save (one `record_batch` call, all-or-nothing, errors shown beside each member), recognise
  pasted text (two columns 姓名/承诺) and read an uploaded sheet (CSV/XLSX through
  `states.sheets`); the last two only fill the boxes for the secretary to check, never save.
* `/runs/{id}/meeting` – a meeting whose attendance is ticked from the roster: expected is the
  在册 members, present the ticks; absent members may carry a short reason (请假、病假 …).

Reach is the run page's: `runs.load_run` answers a run out of reach with the 404 page before
anything else is read. Parsing is pure (`states.evidence.bulk`); writes go through
`states.evidence.records.record_batch` in one `unit_of_work`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlmodel import Session, col, select
from starlette.datastructures import FormData, UploadFile

from api.deps import IdPath
from api.v1.orgs import BUSY_MESSAGE, ImportBusy, import_slot, unsupported
from api.web import session as web
from states import runs
from states.db import read_session, unit_of_work
from states.errors import Conflict, Forbidden, InvalidInput
from states.evidence import bulk
from states.evidence.records import record_batch
from states.members.models import Member
from states.members.queries import active_members
from states.models import Evidence, EvidenceLink
from states.runs import RunContext
from states.sheets import SheetLimits, TooLarge
from states.timeutil import local_date, utcnow
from states.users import Actor

router = APIRouter(include_in_schema=False)

FormDep = Annotated[FormData, Depends(web.form_data)]
ActorDep = Annotated[Actor, Depends(web.page_actor)]
KIND_NAMES = {"commitment": "承诺", "meeting": "会议"}


# --------------------------------------------------------------------------- shared


def _open(s: Session, run_id: int, actor: Actor, kind: str) -> RunContext:
    """The run (404 out of reach) whose current stage takes `kind` and the actor may record."""
    ctx = runs.load_run(s, run_id, actor)
    if "record_evidence" not in runs.allowed_actions(s, ctx, actor):
        raise Forbidden("只有本组织书记、委员或上级党委委员（代办）可以录入材料")
    stage = ctx.tpl.stage(ctx.run.stage)
    if kind not in stage.evidence:
        raise Conflict(f"「{stage.name}」阶段不收{KIND_NAMES[kind]}类材料")
    return ctx


@dataclass(frozen=True)
class Head:
    """What the page heading shows (plain values: the page may render after the session)."""

    run_id: int
    org_name: str
    campaign_name: str
    stage_name: str


def _head(ctx: RunContext) -> Head:
    return Head(ctx.run.id or 0, ctx.org.name, ctx.campaign.name, ctx.tpl.stage_name(ctx.run.stage))


def _entries(members: list[Member]) -> list[bulk.RosterEntry]:
    return [bulk.RosterEntry(m.id or 0, m.name) for m in members]


def _batch_errors(exc: InvalidInput) -> dict[int, str]:
    """`record_batch` details as {item index: message}."""
    out: dict[int, str] = {}
    for d in exc.details if isinstance(exc.details, list) else []:
        if isinstance(d, dict) and isinstance(d.get("item"), int):
            out.setdefault(int(d["item"]), str(d.get("message") or exc.message))
    return out


def _status(exc: Exception) -> int:
    return 403 if isinstance(exc, Forbidden) else 409 if isinstance(exc, Conflict) else 422


# --------------------------------------------------------------------------- commitments


@dataclass
class CommitRow:
    """One box of the commitment form: a member (or the branch, id `bulk.BRANCH`)."""

    id: int
    name: str
    category: str
    text: str = ""
    existing: str | None = None
    error: str = ""

    @property
    def field(self) -> str:
        return "branch" if self.id == bulk.BRANCH else f"m{self.id}"


@dataclass
class CommitPage:
    head: Head
    rows: list[CommitRow]
    paste: str = ""
    error: str = ""
    notice: str = ""
    row_errors: list[bulk.RowError] = field(default_factory=list)
    file_error: str = ""


def _linked_commitments(s: Session, ctx: RunContext) -> dict[int, str]:
    """Texts of the active commitments this run's stage links, by member id (branch: 0)."""
    stmt = (
        select(Evidence.data)
        .join(EvidenceLink, col(EvidenceLink.evidence_id) == col(Evidence.id))
        .where(
            EvidenceLink.run_id == ctx.run.id,
            EvidenceLink.stage == ctx.run.stage,
            Evidence.kind == "commitment",
            Evidence.status == "active",
        )
        .order_by(col(Evidence.id))
    )
    out: dict[int, str] = {}
    for data in s.execute(stmt).scalars():
        d = data or {}
        if d.get("member_id") is not None:
            out.setdefault(int(d["member_id"]), str(d.get("text") or ""))
        elif not d.get("member"):
            out.setdefault(bulk.BRANCH, str(d.get("text") or ""))
    return out


def _commit_page(s: Session, run_id: int, actor: Actor) -> tuple[CommitPage, list[Member]]:
    ctx = _open(s, run_id, actor, "commitment")
    members = active_members(s, ctx.org.id or 0)
    linked = _linked_commitments(s, ctx)
    rows = [CommitRow(bulk.BRANCH, "支部集体承诺", "支部", existing=linked.get(bulk.BRANCH))]
    rows += [
        CommitRow(m.id or 0, m.name, m.category, existing=linked.get(m.id or 0)) for m in members
    ]
    return CommitPage(_head(ctx), rows), members


def _render_commitments(request: Request, page: CommitPage, status: int = 200) -> Response:
    open_rows = [r for r in page.rows if r.existing is None]
    context = {
        "page": page,
        "head": page.head,
        "members": len(page.rows) - 1,
        "done": len(page.rows) - len(open_rows),
        "open_rows": len(open_rows),
        "limits": SheetLimits.from_env(),
        "text_max": bulk.TEXT_MAX,
    }
    return web.render(request, "bulk_commitments.html", context, status_code=status)


@router.get("/runs/{run_id}/commitments")
def commitments_form(run_id: IdPath, request: Request, actor: ActorDep) -> Response:
    with read_session(request.app.state.engine) as s:
        page, _ = _commit_page(s, run_id, actor)
        return _render_commitments(request, page)


@router.post("/runs/{run_id}/commitments", dependencies=[Depends(web.csrf_protect)])
def commitments_submit(
    run_id: IdPath, request: Request, actor: ActorDep, form: FormDep
) -> Response:
    """Save every box at once, or fill the boxes from pasted text or a sheet (action)."""
    with read_session(request.app.state.engine) as s:
        page, members = _commit_page(s, run_id, actor)
        _take_typed(page, form)
        action = str(form.get("action") or "save")
        if action == "paste":
            return _fill_from_paste(request, page, members, str(form.get("paste") or ""))
        if action == "upload":
            return _fill_from_upload(request, page, members, form.get("file"))
    return _save_commitments(request, run_id, actor, page)


def _take_typed(page: CommitPage, form: FormData) -> None:
    for row in page.rows:
        value = form.get(row.field)
        if row.existing is None and isinstance(value, str):
            row.text = value.strip()


def _fill(page: CommitPage, texts: dict[int, str], errors: list[bulk.RowError]) -> None:
    """Put matched texts in their boxes; a box already recorded keeps its record."""
    by_id = {r.id: r for r in page.rows}
    for member_id, text in texts.items():
        row = by_id[member_id]
        if row.existing is not None:
            errors.append(bulk.RowError(0, row.name, f"「{row.name}」本阶段已有承诺，未采用"))
        else:
            row.text = text
    page.row_errors = sorted(errors, key=lambda e: e.row)
    filled = len(texts) - sum(1 for e in errors if e.row == 0)
    if errors:
        page.error = f"有 {len(errors)} 行未能对应到名册，其余 {filled} 行已填入下方，尚未保存"
    else:
        page.notice = f"已填入 {filled} 名党员的承诺，请核对后点击「保存全部承诺」"


def _fill_from_paste(
    request: Request, page: CommitPage, members: list[Member], text: str
) -> Response:
    page.paste = text
    try:
        rows, errors = bulk.parse_paste(text)
    except InvalidInput as exc:
        page.error = exc.message
        return _render_commitments(request, page, 413 if isinstance(exc, TooLarge) else 422)
    if not rows and not errors:
        page.error = "粘贴框是空的：请从表格中复制「姓名、承诺」两列后粘贴"
        return _render_commitments(request, page, 422)
    texts, unmatched = bulk.match_roster(rows, _entries(members))
    _fill(page, texts, errors + unmatched)
    return _render_commitments(request, page, 422 if page.row_errors else 200)


def _fill_from_upload(
    request: Request, page: CommitPage, members: list[Member], upload: Any
) -> Response:
    if not isinstance(upload, UploadFile) or not upload.filename:
        page.file_error = "请选择文件"
        return _render_commitments(request, page, 422)
    suffix = Path(upload.filename).suffix.lower()
    message = unsupported(suffix)
    if message is not None:
        page.file_error = message
        return _render_commitments(request, page, 422)
    try:
        with import_slot():
            rows, errors = _read_upload(upload.file, suffix)
    except InvalidInput as exc:
        page.file_error = exc.message
        return _render_commitments(request, page, 413 if isinstance(exc, TooLarge) else 422)
    except ImportBusy:
        page.file_error = BUSY_MESSAGE
        return _render_commitments(request, page, 503)
    texts, unmatched = bulk.match_roster(rows, _entries(members))
    _fill(page, texts, errors + unmatched)
    return _render_commitments(request, page, 422 if page.row_errors else 200)


def _read_upload(source: BinaryIO, suffix: str) -> tuple[list[bulk.Pasted], list[bulk.RowError]]:
    """Copy the upload (at most one byte over the limit) to a temporary file and read it."""
    limits = SheetLimits.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"upload{suffix}"
        source.seek(0)
        budget = limits.max_bytes + 1
        with path.open("wb") as out:
            while budget > 0 and (chunk := source.read(min(budget, 1024 * 1024))):
                out.write(chunk)
                budget -= len(chunk)
        return bulk.read_commitment_sheet(path, limits)


def _save_commitments(request: Request, run_id: int, actor: Actor, page: CommitPage) -> Response:
    typed = [r for r in page.rows if r.existing is None and r.text]
    for row in typed:
        if len(row.text) > bulk.TEXT_MAX:
            row.error = f"最多 {bulk.TEXT_MAX} 字（现 {len(row.text)} 字）"
    if not typed or any(r.error for r in typed):
        page.error = "请按提示修改后再提交" if typed else "请至少填写一条承诺"
        return _render_commitments(request, page, 422)
    items = bulk.commitment_items({r.id: r.text for r in typed})
    try:
        with unit_of_work(request.app.state.engine) as s:
            record_batch(s, run_id=run_id, actor=actor, items=items)
    except (InvalidInput, Conflict, Forbidden) as exc:
        for index, message in _batch_errors(exc).items() if isinstance(exc, InvalidInput) else []:
            if 0 <= index < len(typed):
                typed[index].error = message
        page.error = f"未保存任何承诺：{exc.message}"
        return _render_commitments(request, page, _status(exc))
    web.flash(request, f"已录入 {len(items)} 条承诺")
    return web.redirect(f"/runs/{run_id}#checklist")


# --------------------------------------------------------------------------- meetings


@dataclass
class AttendRow:
    id: int
    name: str
    category: str
    present: bool = True
    reason: str = ""
    error: str = ""


@dataclass
class MeetingPage:
    head: Head
    rows: list[AttendRow]
    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    error: str = ""


def _meeting_page(s: Session, run_id: int, actor: Actor) -> MeetingPage:
    ctx = _open(s, run_id, actor, "meeting")
    members = active_members(s, ctx.org.id or 0)
    rows = [AttendRow(m.id or 0, m.name, m.category) for m in members]
    return MeetingPage(_head(ctx), rows, {"date": local_date(utcnow()).isoformat()})


def _render_meeting(request: Request, page: MeetingPage, status: int = 200) -> Response:
    context = {
        "page": page,
        "head": page.head,
        "present": sum(1 for r in page.rows if r.present),
        "reason_max": bulk.REASON_MAX,
    }
    return web.render(request, "bulk_meeting.html", context, status_code=status)


@router.get("/runs/{run_id}/meeting")
def meeting_form(run_id: IdPath, request: Request, actor: ActorDep) -> Response:
    with read_session(request.app.state.engine) as s:
        return _render_meeting(request, _meeting_page(s, run_id, actor))


@router.post("/runs/{run_id}/meeting", dependencies=[Depends(web.csrf_protect)])
def meeting_submit(run_id: IdPath, request: Request, actor: ActorDep, form: FormDep) -> Response:
    """Record one meeting with the attendance ticked from the roster."""
    with read_session(request.app.state.engine) as s:
        page = _meeting_page(s, run_id, actor)
    item = _meeting_input(page, form)
    if item is None:
        page.error = page.error or "请按提示修改后再提交"
        return _render_meeting(request, page, 422)
    try:
        with unit_of_work(request.app.state.engine) as s:
            record_batch(s, run_id=run_id, actor=actor, items=[item])
    except (InvalidInput, Conflict, Forbidden) as exc:
        page.error = f"未保存：{exc.message}"
        return _render_meeting(request, page, _status(exc))
    present = len(item[1]["attendees"])
    web.flash(
        request,
        f"已录入会议：{page.values['title']}（应到 {len(page.rows)} 人，实到 {present} 人）",
    )
    return web.redirect(f"/runs/{run_id}#evidence")


def _meeting_input(page: MeetingPage, form: FormData) -> tuple[str, dict[str, Any]] | None:
    """Read and check the form into `page`; return the meeting item, or None with errors set."""
    values = {k: str(form.get(k) or "").strip() for k in ("title", "date", "notes")}
    page.values = values
    if not page.rows:
        page.error = "本支部尚未导入党员名册，无法按名册点名；请在进度页面的会议表单中填写人数"
        return None
    _check_meeting_fields(values, page.errors)
    ticked = {int(v) for v in form.getlist("present") if isinstance(v, str) and v.isdecimal()}
    reasons = {r.id: str(form.get(f"r{r.id}") or "") for r in page.rows}
    att, errors = bulk.attendance(_roster_of(page), ticked, reasons)
    for row in page.rows:
        row.present, row.reason = row.id in ticked, reasons[row.id].strip()
        row.error = errors.get(row.id, "")
    if page.errors or errors:
        return None
    return bulk.meeting_item(
        title=values["title"], date=values["date"], notes=values["notes"], att=att
    )


def _roster_of(page: MeetingPage) -> list[bulk.RosterEntry]:
    return [bulk.RosterEntry(r.id, r.name) for r in page.rows]


def _check_meeting_fields(values: dict[str, str], errors: dict[str, str]) -> None:
    if not values["title"]:
        errors["title"] = "请填写会议名称"
    elif len(values["title"]) > 200:
        errors["title"] = "最多 200 字"
    try:
        day = date.fromisoformat(values["date"])
        if not 2000 <= day.year <= 2100:
            errors["date"] = "日期超出范围"
    except ValueError:
        errors["date"] = "须为日期（YYYY-MM-DD）"
    if len(values["notes"]) > 2000:
        errors["notes"] = "最多 2000 字"

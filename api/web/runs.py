"""A run's page (/runs/{id}): timeline, checklist, evidence forms, requests, history.

Also the view helpers the desk and the approvals page share: the progress bar, the deadline
badge, evidence summaries in words. Every write goes through the same services as the JSON API
(`states.runs`), in one `unit_of_work`: the change, its audit event and its outbox rows commit
together; a rule that blocks it (a `states.errors` domain error) is shown with every reason and
nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlmodel import Session, col, select

from api.deps import IdPath
from api.errors import VALIDATION_MESSAGES
from api.v1.convert import timeline, users_by_id
from api.web import session as web
from api.web.confirm import BACK, CONFIRM, confirm_page, step_of
from api.web.evidence_views import (
    KIND_LABELS,
    EvidenceForm,
    EvidenceView,
    FieldSpec,
    _title_of,
    evidence_fields,
    evidence_views,
    member_names,
    subject_text,
)
from api.web.rehearsal import withdraw_confirmation
from states import runs
from states.catalog import DONE, Template
from states.db import read_session, unit_of_work
from states.errors import Conflict, DomainError, Forbidden, InvalidInput
from states.evidence import SCHEMAS
from states.evidence.queries import reusable
from states.evidence.records import accepted_kinds, recorder
from states.models import Decision, Evidence, Organisation, Run
from states.models import Request as RequestRow
from states.queries import evidence_of
from states.runs import STATUS_LABELS, RunContext
from states.timeutil import end_of_local_day, format_local, local_date, utcnow
from states.users import Actor
from states.workcal import WorkCalendar, load_calendar

router = APIRouter(include_in_schema=False)
#: Re-exported for the desk, approvals and record pages.
__all__ = [
    "KIND_LABELS",
    "EvidenceForm",
    "EvidenceView",
    "FieldSpec",
    "evidence_fields",
    "evidence_views",
]

EVIDENCE_EVENTS = {
    "evidence.linked": "使用已有记录",
    "evidence.unlinked": "不再计入本阶段",
    "evidence.amended": "更正材料",
    "evidence.voided": "作废材料",
}
REQUEST_KIND_LABELS = {"advance": "推进申请", "extension": "延期申请"}
#: Amber when this many working days or fewer are left.
AMBER_WORKING_DAYS = 3
HISTORY_PAGE = 20  # history events per page on the run page


# --------------------------------------------------------------------------- view helpers


@dataclass(frozen=True)
class Badge:
    level: str  # red | amber | green | grey
    text: str
    title: str = ""


def deadline_badge(run: Run, now: datetime, cal: WorkCalendar) -> Badge:
    """Days left as a coloured badge: overdue red, ≤3 working days amber, otherwise green."""
    if run.completed_at is not None or run.stage == DONE:
        return Badge("grey", "已完成")
    if run.deadline is None:
        return Badge("grey", "无期限")
    title = "截止 " + format_local(run.deadline)
    today, last = local_date(now), local_date(run.deadline)
    days = (last - today).days
    if run.deadline < now:
        return Badge("red", f"已逾期 {max(1, (today - last).days)} 天", title)
    if days <= 0:
        return Badge("red", "今天截止", title)
    working = cal.working_days_between(today, last)
    if working <= AMBER_WORKING_DAYS:
        return Badge("amber", f"剩 {days} 天（{working} 个工作日）", title)
    return Badge("green", f"剩 {days} 天", title)


@dataclass(frozen=True)
class Segment:
    name: str
    status: str  # done | current | todo


@dataclass(frozen=True)
class Progress:
    segments: list[Segment]
    label: str


def progress(tpl: Template, stage: str) -> Progress:
    ids = tpl.stage_ids
    segs = []
    here = ids.index(stage) if stage in ids else len(ids)
    for i, sid in enumerate(ids):
        status = "done" if i < here else ("current" if i == here else "todo")
        segs.append(Segment(tpl.stage_name(sid), status))
    if stage == DONE:
        label = f"已完成全部 {len(ids)} 个阶段"
    else:
        label = f"第 {here + 1}/{len(ids)} 阶段：{tpl.stage_name(stage)}"
    return Progress(segs, label)


@dataclass(frozen=True)
class Opinion:
    """The last word from above on this run: a returned request's reason."""

    kind: str
    text: str
    by: str
    at: datetime | None


def last_return(session: Session, run: Run) -> Opinion | None:
    """The reason of the run's latest request if it was returned and nothing was asked since."""
    req = session.execute(
        select(RequestRow)
        .where(RequestRow.run_id == run.id)
        .order_by(col(RequestRow.id).desc())
        .limit(1)
    ).scalar_one_or_none()
    if req is None or req.status != "returned" or run.pending_request_id is not None:
        return None
    decision = session.execute(
        select(Decision)
        .where(Decision.request_id == req.id, Decision.outcome == "returned")
        .order_by(col(Decision.step).desc())
        .limit(1)
    ).scalar_one_or_none()
    by = ""
    if decision is not None:
        user = users_by_id(session, {decision.decided_by}).get(decision.decided_by)
        by = user.display_name if user else ""
    return Opinion(
        REQUEST_KIND_LABELS.get(req.kind, req.kind), req.return_reason or "", by, req.decided_at
    )


@dataclass(frozen=True)
class HistoryView:
    at: datetime
    who: str
    text: str
    detail: str


def _stage(tpl: Template, stage: Any) -> str:
    try:
        return tpl.stage_name(str(stage))
    except DomainError:
        return str(stage)


def _when(value: Any) -> str:
    try:
        return format_local(datetime.fromisoformat(str(value)))
    except ValueError:
        return str(value)


def describe_event(
    tpl: Template, action: str, data: dict[str, Any], names: dict[int, str] | None = None
) -> tuple[str, str]:
    """An audit event of a run in words: (what happened, the comment or reason)."""
    d = data or {}
    if action == "evidence.recorded":
        text = "录入材料：" + KIND_LABELS.get(str(d.get("kind")), str(d.get("kind")))
        subject = subject_text(str(d.get("subject") or ""), names or {})
        if subject:
            text += subject if subject.startswith("（") else f"（{subject}）"
        return text + ("（上级代办）" if d.get("on_behalf") else ""), ""
    if action == "attachment.added":
        return f"上传附件：{d.get('filename') or ''}", ""
    if action in EVIDENCE_EVENTS:
        what = KIND_LABELS.get(str(d.get("kind")), str(d.get("kind")))
        text = f"{EVIDENCE_EVENTS[action]}：{what} #{d.get('evidence_id')}"
        if action == "evidence.amended":
            text += f"（第 {d.get('version')} 版）"
        return text, str(d.get("reason") or "")
    if action == "request.submitted":
        text = f"申请推进：{_stage(tpl, d.get('from_stage'))} → {_stage(tpl, d.get('to_stage'))}"
        return text + ("（上级代办）" if d.get("on_behalf") else ""), str(d.get("comment") or "")
    if action == "request.step_approved":
        return "本级审批通过，转上一级审批", str(d.get("opinion") or "")
    if action == "stage.advanced":
        return f"审批通过，进入「{_stage(tpl, d.get('to_stage'))}」", str(d.get("opinion") or "")
    if action == "request.returned":
        what = "退回延期申请" if d.get("kind") == "extension" else "退回推进申请"
        if d.get("to_stage"):
            what += f"，创建进度退回到「{_stage(tpl, d.get('to_stage'))}」"
        return what, str(d.get("reason") or "")
    if action == "request.withdrawn":
        return "撤回" + REQUEST_KIND_LABELS.get(str(d.get("kind")), "申请"), ""
    if action == "extension.requested":
        return f"申请延期至 {_when(d.get('new_deadline'))}", str(d.get("reason") or "")
    if action == "extension.granted":
        return f"批准延期至 {_when(d.get('new_deadline'))}", str(d.get("opinion") or "")
    if action == "run.sent_back":
        return f"上级退回到「{_stage(tpl, d.get('to_stage'))}」", str(d.get("reason") or "")
    return action, ""


# --------------------------------------------------------------------------- the run page


def run_context(
    session: Session,
    ctx: RunContext,
    actor: Actor,
    now: datetime,
    cal: WorkCalendar,
    history_page: int = 1,
) -> dict[str, Any]:
    """Everything the run page shows, read in one session."""
    run, tpl = ctx.run, ctx.tpl
    actions = runs.allowed_actions(session, ctx, actor)
    checklist = runs.checklist(session, ctx)
    pending = session.get(RequestRow, run.pending_request_id) if run.pending_request_id else None
    pending_ext = session.execute(
        select(RequestRow).where(
            RequestRow.run_id == run.id,
            RequestRow.kind == "extension",
            RequestRow.status == "pending",
        )
    ).scalar_one_or_none()
    approver_ids = {r.current_approver_org_id for r in (pending, pending_ext) if r is not None}
    approvers = {
        o.id: o.name
        for o in session.execute(
            select(Organisation).where(
                col(Organisation.id).in_(sorted(i or 0 for i in approver_ids))
            )
        ).scalars()
    }
    requesters = users_by_id(
        session, {r.requested_by for r in (pending, pending_ext) if r is not None}
    )
    items, _ = evidence_of(session, run.id or 0, stage=run.stage, limit=200)
    pages, history_page = _history_pages(session, run.id or 0, actor, history_page)
    events, total_events = runs.history(
        session, run.id or 0, actor, limit=HISTORY_PAGE, offset=(history_page - 1) * HISTORY_PAGE
    )
    who = users_by_id(session, {e.actor_id for e in events if e.actor_id})
    subjects = [str((e.data or {}).get("subject") or "") for e in events]
    names = member_names(
        session, {int(x[7:]) for x in subjects if x.startswith("member:") and x[7:].isdigit()}
    )
    history = []
    for e in events:
        text, detail = describe_event(tpl, e.action, e.data, names)
        user = who.get(e.actor_id) if e.actor_id else None
        history.append(HistoryView(e.at, user.display_name if user else "系统", text, detail))
    kinds: list[str] = []
    reuse: list[Evidence] = []
    if run.stage != DONE and "record_evidence" in actions:
        kinds = [
            k
            for k in accepted_kinds(tpl.stage(run.stage))
            if k in SCHEMAS and _may_record(session, ctx, actor, k)
        ]
        reuse = reusable(session, run.id or 0, actor)
    return {
        "ctx": ctx,
        "run": run,
        "org": ctx.org,
        "campaign": ctx.campaign,
        "tpl": tpl,
        "stage_name": tpl.stage_name(run.stage),
        "stage_description": tpl.stage(run.stage).description if run.stage != DONE else "",
        "timeline": timeline(tpl, run.stage),
        "progress": progress(tpl, run.stage),
        "badge": deadline_badge(run, now, cal),
        "deadline_text": format_local(run.deadline) if run.deadline else "无期限",
        "checklist": checklist,
        "unmet": [c for c in checklist if not c.met],
        "actions": actions,
        "pending": pending,
        "pending_ext": pending_ext,
        "approvers": approvers,
        "requesters": requesters,
        "status_labels": STATUS_LABELS,
        "kind_labels": KIND_LABELS,
        "request_kind_labels": REQUEST_KIND_LABELS,
        "evidence": evidence_views(session, tpl, items),
        "evidence_kinds": kinds,
        "reusable": evidence_views(session, tpl, reuse),
        "returned": last_return(session, run),
        "history": history,
        "history_total": total_events,
        "history_page": history_page,
        "history_pages": pages,
        "min_extension": (
            local_date(run.deadline).isoformat() if run.deadline else local_date(now).isoformat()
        ),
    }


def _history_pages(session: Session, run_id: int, actor: Actor, wanted: int) -> tuple[int, int]:
    """How many history pages the run has, and the wanted page clamped into them."""
    _, total = runs.history(session, run_id, actor, limit=0)
    pages = max(1, -(-total // HISTORY_PAGE))
    return pages, min(max(wanted, 1), pages)


def _may_record(session: Session, ctx: RunContext, actor: Actor, kind: str) -> bool:
    try:
        recorder(session, ctx, actor, kind)
    except Forbidden:
        return False
    return True


def render_run(
    request: Request,
    run_id: int,
    actor: Actor,
    *,
    forms: dict[str, EvidenceForm] | None = None,
    error: str | None = None,
    reasons: list[str] | None = None,
    extension: dict[str, Any] | None = None,
    advance_comment: str = "",
    status_code: int = 200,
    history_page: int = 1,
) -> Response:
    now = utcnow()
    # Rendered inside the session: the rows are read lazily and expire when it closes.
    with read_session(request.app.state.engine) as s:
        ctx = runs.load_run(s, run_id, actor)
        page = run_context(s, ctx, actor, now, load_calendar(s), history_page)
        given = forms or {}
        page["forms"] = [
            given.get(k)
            or EvidenceForm(k, KIND_LABELS.get(k, k), evidence_fields(page["tpl"], k), open=False)
            for k in page["evidence_kinds"]
        ]
        if page["forms"] and not given:
            page["forms"][0].open = not page["evidence"]
        for kind, form in given.items():  # a kind this stage has no form for: say it on top
            if kind not in page["evidence_kinds"] and error is None:
                error = form.error
        page.update(
            {
                "error": error,
                "reasons": reasons or [],
                "extension": extension or {"values": {}, "errors": {}},
                "advance_comment": advance_comment,
            }
        )
        return web.render(request, "run.html", page, status_code=status_code)


@router.get("/runs/{run_id}")
def run_page(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    history_page: int = Query(1, ge=1, le=100_000, description="历史记录页码（每页 20 条）"),
) -> Response:
    return render_run(request, run_id, actor, history_page=history_page)


# --------------------------------------------------------------------------- forms


def _message(err: Any) -> str:
    kind = str(err.get("type", ""))
    ctx = err.get("ctx") or {}
    if kind == "string_too_long" and "max_length" in ctx:
        return f"最多 {ctx['max_length']} 字"
    if kind in ("less_than_equal", "less_than") and "le" in ctx:
        return f"不能大于 {ctx['le']}"
    if kind in ("greater_than_equal", "greater_than") and "ge" in ctx:
        return f"不能小于 {ctx['ge']}"
    if kind == "literal_error":
        return "请从选项中选择"
    if kind == "value_error":
        return str(err.get("msg", "")).removeprefix("Value error, ")
    return VALIDATION_MESSAGES.get(kind) or "取值有误"


def form_errors(kind: str, exc: ValidationError, fields: list[FieldSpec]) -> dict[str, str]:
    """Pydantic errors as {field: Chinese message}; model-level errors go to a sensible field."""
    names = [f.name for f in fields]
    fallback = {"meeting": "present", "decision": "grade"}.get(kind, names[0] if names else "")
    out: dict[str, str] = {}
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[0] if loc and loc[0] in names else fallback
        out.setdefault(name, _message(err))
    return out


def _domain_field_errors(exc: DomainError, names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(exc.details, list):
        for d in exc.details:
            if isinstance(d, dict) and d.get("field") in names:
                out[str(d["field"])] = str(d.get("message") or exc.message)
    return out


def _error_status(exc: DomainError) -> int:
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, Conflict):
        return 409
    return 422


@router.post("/runs/{run_id}/evidence", dependencies=[Depends(web.csrf_protect)])
def add_evidence(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    kind = form.get("kind", "")
    with read_session(request.app.state.engine) as s:
        tpl = runs.load_run(s, run_id, actor).tpl  # out of reach: the 404 page
    if kind not in SCHEMAS:
        return render_run(request, run_id, actor, error="请选择要录入的材料类型", status_code=422)
    fields = evidence_fields(tpl, kind)
    values = {f.name: form.get(f.name, "").strip() for f in fields}
    data = {k: v for k, v in values.items() if v != ""}
    label = KIND_LABELS[kind]

    def again(errors: dict[str, str], message: str, status: int) -> Response:
        forms = {kind: EvidenceForm(kind, label, fields, values, errors, message, open=True)}
        return render_run(request, run_id, actor, forms=forms, status_code=status)

    try:
        SCHEMAS[kind].model_validate(data)
    except ValidationError as exc:
        return again(form_errors(kind, exc, fields), "请按提示修改后再提交", 422)
    try:
        with unit_of_work(request.app.state.engine) as s:
            ev = runs.record_evidence(s, run_id=run_id, actor=actor, kind=kind, data=data)
            title = _title_of(kind, ev.data or {}, ev.subject)
    except (InvalidInput, Conflict, Forbidden) as exc:
        errors = _domain_field_errors(exc, [f.name for f in fields])
        return again(errors, exc.message, _error_status(exc))
    web.flash(request, f"已录入{label}" + (f"：{title}" if title else ""))
    return web.redirect(f"/runs/{run_id}#evidence")


@router.post("/runs/{run_id}/advance", dependencies=[Depends(web.csrf_protect)])
def advance(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    comment = form.get("comment", "").strip()
    if len(comment) > 2000:
        return render_run(
            request,
            run_id,
            actor,
            error="说明最多 2000 字",
            advance_comment=comment[:2000],
            status_code=422,
        )
    try:
        with unit_of_work(request.app.state.engine) as s:
            req = runs.request_advance(s, run_id=run_id, actor=actor, comment=comment or None)
            approver = s.get(Organisation, req.current_approver_org_id or 0)
            approver_name = approver.name if approver else "上级党组织"
    except (InvalidInput, Conflict, Forbidden) as exc:
        return render_run(
            request,
            run_id,
            actor,
            error=exc.message.split("：", 1)[0] if web.domain_reasons(exc) else exc.message,
            reasons=web.domain_reasons(exc),
            advance_comment=comment,
            status_code=_error_status(exc),
        )
    web.flash(request, f"已提交推进申请，等待「{approver_name}」审批")
    return web.redirect(f"/runs/{run_id}")


def _parse_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


@router.post("/runs/{run_id}/extension", dependencies=[Depends(web.csrf_protect)])
def extension(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    values = {
        "new_date": form.get("new_date", "").strip(),
        "reason": form.get("reason", "").strip(),
    }
    errors: dict[str, str] = {}
    day = _parse_date(values["new_date"]) if values["new_date"] else None
    if not values["new_date"]:
        errors["new_date"] = "请选择新的截止日期"
    elif day is None or not 2000 <= day.year <= 2100:
        errors["new_date"] = "须为日期（YYYY-MM-DD）"
    if not values["reason"]:
        errors["reason"] = "请说明延期理由"
    elif len(values["reason"]) > 2000:
        errors["reason"] = "最多 2000 字"

    def again(message: str | None, status: int) -> Response:
        ext = {"values": values, "errors": errors, "error": message, "open": True}
        return render_run(request, run_id, actor, extension=ext, status_code=status)

    if errors or day is None:
        return again("请按提示修改后再提交", 422)
    try:
        with unit_of_work(request.app.state.engine) as s:
            runs.request_extension(
                s,
                run_id=run_id,
                actor=actor,
                new_deadline=end_of_local_day(day),
                reason=values["reason"],
            )
    except (InvalidInput, Conflict, Forbidden) as exc:
        field_errors = _domain_field_errors(exc, ["reason"])
        if any(isinstance(d, dict) and d.get("field") == "new_deadline" for d in exc.details or []):
            field_errors["new_date"] = exc.message
        errors.update(field_errors)
        return again(exc.message, _error_status(exc))
    web.flash(request, f"已提交延期申请（至 {day.isoformat()}），等待上级审批")
    return web.redirect(f"/runs/{run_id}")


@router.post("/runs/{run_id}/withdraw", dependencies=[Depends(web.csrf_protect)])
def withdraw(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    raw = form.get("request_id", "")
    with read_session(request.app.state.engine) as s:
        ctx = runs.load_run(s, run_id, actor)
        ids = set(
            s.execute(
                select(RequestRow.id).where(
                    RequestRow.run_id == ctx.run.id, RequestRow.status == "pending"
                )
            ).scalars()
        )
    if not raw.isdigit() or int(raw) not in ids:
        return render_run(
            request, run_id, actor, error="该申请已不在待审批状态，请刷新后查看", status_code=409
        )
    step = step_of(form)
    if step == BACK:
        return web.redirect(f"/runs/{run_id}")
    if step != CONFIRM:  # the first POST only shows what will happen (api.web.confirm)
        try:
            return confirm_page(request, withdraw_confirmation(request, actor, run_id, int(raw)))
        except Forbidden as exc:
            return render_run(request, run_id, actor, error=exc.message, status_code=403)
    try:
        with unit_of_work(request.app.state.engine) as s:
            req = runs.withdraw(s, request_id=int(raw), actor=actor)
            kind = REQUEST_KIND_LABELS.get(req.kind, "申请")
    except (InvalidInput, Conflict, Forbidden) as exc:
        return render_run(request, run_id, actor, error=exc.message, status_code=_error_status(exc))
    web.flash(request, f"已撤回{kind}")
    return web.redirect(f"/runs/{run_id}")

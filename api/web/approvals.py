"""审批 (`/approvals`): the inbox with approve and return, and what the branch recorded.

Each pending request shows the stage's checklist and the evidence recorded for it inline, so
a committee member decides on one page. Returning needs an opinion (checked here and in
`states.runs.return_request`). A decision goes through a confirmation page
(`api.web.confirm`): the first POST rehearses it in a transaction that is always rolled back
(so every rule is checked and the outcome is known) and shows what will happen; only the
confirmation POST (`step=confirm`) acts. Batch decisions and stock opinions (常用意见) are
`api.web.approvals_batch`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import IdPath
from api.v1.convert import requests_out
from api.web import session as web
from api.web.confirm import BACK, CONFIRM, confirm_page, step_of
from api.web.rehearsal import rehearse
from api.web.runs import (
    Badge,
    EvidenceView,
    deadline_badge,
    evidence_views,
)
from api.web.session import domain_reasons
from states import opinions, runs
from states.campaigns import template_by_digest
from states.db import read_session, unit_of_work
from states.errors import Conflict, DomainError, Forbidden, InvalidInput
from states.models import TemplateVersion
from states.queries import approval_inbox, evidence_of
from states.requirements import RequirementStatus
from states.runs import RunContext
from states.timeutil import utcnow
from states.users import Actor
from states.workcal import load_calendar

router = APIRouter(include_in_schema=False)

INBOX_LIMIT = 50
MAX_OPINION = 2000


@dataclass
class ApprovalCard:
    request_id: int
    run_id: int
    org_name: str
    campaign_name: str
    kind: str
    kind_label: str
    from_stage: str
    to_stage: str
    requested_by: str
    on_behalf: bool
    comment: str | None
    requested_deadline: datetime | None
    submitted_at: datetime
    chain: list[str]
    step: int
    decisions: list[Any]
    badge: Badge
    checklist: list[RequirementStatus]
    evidence: list[EvidenceView]
    #: Stages before the one the request leaves: a return may also send the run back to one.
    earlier: list[tuple[str, str]] = field(default_factory=list)
    form: dict[str, str] = field(default_factory=dict)


def inbox_cards(session: Session, actor: Actor) -> tuple[list[ApprovalCard], int]:
    rows, total = approval_inbox(session, actor, limit=INBOX_LIMIT)
    outs = requests_out(session, [r.request for r in rows])
    now = utcnow()
    cal = load_calendar(session)
    cards = []
    for row, out in zip(rows, outs, strict=True):
        version = session.get(TemplateVersion, row.campaign.template_version_id)
        assert version is not None
        tpl = template_by_digest(session, version.id or 0, version.digest)
        req = row.request
        ctx = RunContext(row.run, row.campaign, row.org, tpl)
        checklist = runs.checklist(session, ctx) if req.kind == "advance" else []
        items, _ = evidence_of(session, row.run.id or 0, stage=req.from_stage, limit=100)
        cards.append(
            ApprovalCard(
                request_id=req.id or 0,
                run_id=row.run.id or 0,
                org_name=row.org.name,
                campaign_name=row.campaign.name,
                kind=req.kind,
                kind_label="延期申请" if req.kind == "extension" else "推进申请",
                from_stage=tpl.stage_name(req.from_stage),
                to_stage=tpl.stage_name(req.to_stage) if req.to_stage else "",
                requested_by=out.requested_by.display_name,
                on_behalf=req.on_behalf,
                comment=req.comment,
                requested_deadline=req.requested_deadline,
                submitted_at=req.submitted_at,
                chain=[o.name for o in out.chain],
                step=req.step,
                decisions=out.decisions,
                badge=deadline_badge(row.run, now, cal),
                checklist=checklist,
                evidence=evidence_views(session, tpl, items),
                earlier=_earlier(tpl, req.from_stage) if req.kind == "advance" else [],
            )
        )
    return cards, total


def _earlier(tpl: Any, stage: str) -> list[tuple[str, str]]:
    ids = tpl.stage_ids
    return [(sid, tpl.stage_name(sid)) for sid in ids[: ids.index(stage)]] if stage in ids else []


def render_inbox(
    request: Request,
    actor: Actor,
    *,
    error: str | None = None,
    reasons: list[str] | None = None,
    forms: dict[int, dict[str, str]] | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    """The inbox; `extra` adds the batch form's values or a batch's results to the page."""
    with read_session(request.app.state.engine) as s:
        cards, total = inbox_cards(s, actor)
        for card in cards:
            card.form = (forms or {}).get(card.request_id, {})
        context = {
            "cards": cards,
            "total": total,
            "error": error,
            "reasons": reasons or [],
            "stock": opinions.list_for(s, actor),
            "committees": [(o.id, o.name) for o in opinions.committees_of(s, actor)],
            "batch": {},
            "results": [],
            "batch_label": "",
            "stock_form": None,
            **(extra or {}),
        }
        return web.render(  # inside the session: the rows expire when it closes
            request, "approvals.html", context, status_code=status_code
        )


@router.get("/approvals")
def approvals(request: Request, actor: Actor = Depends(web.page_actor)) -> Response:
    return render_inbox(request, actor)


def _status(exc: DomainError) -> int:
    return 403 if isinstance(exc, Forbidden) else 409 if isinstance(exc, Conflict) else 422


def _org_of(session: Session, request_id: int, actor: Actor) -> str:
    req = runs.load_request(session, request_id, actor)
    return runs.load_run(session, req.run_id, actor).org.name


def with_stock(request: Request, actor: Actor, text: str, stock_id: str | None) -> str:
    """The typed text, or (when empty) the chosen stock opinion of one of the actor's committees."""
    if text or not (stock_id or "").isdigit():
        return text
    with read_session(request.app.state.engine) as s:
        return opinions.texts_for(s, actor).get(int(stock_id or 0), "")


def _refused(
    request: Request, actor: Actor, exc: DomainError, forms: dict[int, dict[str, str]]
) -> Response:
    return render_inbox(
        request,
        actor,
        error=exc.message,
        reasons=domain_reasons(exc),
        forms=forms,
        status_code=_status(exc),
    )


def _back(
    request: Request, actor: Actor, next_url: str, forms: dict[int, dict[str, str]]
) -> Response:
    """返回 on a confirmation page: the inbox with what was typed, or the page it came from."""
    if next_url != "/approvals":
        return web.redirect(next_url)
    return render_inbox(request, actor, forms=forms)


@router.post("/approvals/{request_id}/approve", dependencies=[Depends(web.csrf_protect)])
def approve(
    request_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    opinion = with_stock(request, actor, form.get("opinion", "").strip(), form.get("stock_opinion"))
    next_url = web.safe_next(form.get("next"), "/approvals")
    forms = {request_id: {"opinion": opinion}}
    if len(opinion) > MAX_OPINION:
        forms[request_id]["opinion_error"] = f"最多 {MAX_OPINION} 字"
        return render_inbox(request, actor, forms=forms, status_code=422)
    step = step_of(form)
    try:
        if step == BACK:
            return _back(request, actor, next_url, forms)
        if step != CONFIRM:
            preview = rehearse(request, actor, request_id, "approve", opinion, None)
            return confirm_page(request, preview.confirmation(opinion, None, next_url))
        with unit_of_work(request.app.state.engine) as s:
            name = _org_of(s, request_id, actor)  # out of reach: the 404 page
            req = runs.approve(s, request_id=request_id, actor=actor, opinion=opinion or None)
            forwarded = req.status == "pending"
    except (InvalidInput, Conflict, Forbidden) as exc:
        return _refused(request, actor, exc, forms)
    web.flash(request, f"已同意「{name}」的申请" + ("，已转上一级审批" if forwarded else ""))
    return web.redirect(next_url)


def _return_problem(reason: str, to_stage: str | None, earlier: list[str]) -> str | None:
    if not reason:
        return "退回须填写意见"
    if len(reason) > MAX_OPINION:
        return f"最多 {MAX_OPINION} 字"
    if to_stage is not None and to_stage not in earlier:
        return "只能退回到此前的阶段"
    return None


@router.post("/approvals/{request_id}/return", dependencies=[Depends(web.csrf_protect)])
def return_request(
    request_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    reason = with_stock(request, actor, form.get("reason", "").strip(), form.get("stock_opinion"))
    to_stage = form.get("to_stage", "").strip() or None
    next_url = web.safe_next(form.get("next"), "/approvals")
    with read_session(request.app.state.engine) as s:
        req = runs.load_request(s, request_id, actor)  # out of reach: the 404 page
        tpl = runs.load_run(s, req.run_id, actor).tpl
        earlier = [sid for sid, _ in _earlier(tpl, req.from_stage)] if req.kind == "advance" else []
    forms = {request_id: {"reason": reason, "to_stage": to_stage or ""}}
    problem = _return_problem(reason, to_stage, earlier)
    if problem:
        forms[request_id]["reason_error"] = problem
        return render_inbox(request, actor, error=problem, forms=forms, status_code=422)
    step = step_of(form)
    try:
        if step == BACK:
            return _back(request, actor, next_url, forms)
        if step != CONFIRM:
            preview = rehearse(request, actor, request_id, "return", reason, to_stage)
            return confirm_page(request, preview.confirmation(reason, to_stage, next_url))
        with unit_of_work(request.app.state.engine) as s:
            name = _org_of(s, request_id, actor)
            runs.return_request(
                s, request_id=request_id, actor=actor, reason=reason, to_stage=to_stage
            )
    except (InvalidInput, Conflict, Forbidden) as exc:
        return _refused(request, actor, exc, forms)
    back = f"，进度已退回到「{tpl.stage_name(to_stage)}」" if to_stage else ""
    web.flash(request, f"已退回「{name}」的申请{back}，意见已通知支部")
    return web.redirect(next_url)

"""批量审批 on `/approvals`, and the committee's stock opinions (常用意见).

The inbox's checkboxes belong to one batch form (`form="batch"`, no JavaScript): 批量同意 or
批量退回 with one opinion (typed, or a stock opinion chosen when the box is empty). The first
POST shows a confirmation page listing every chosen request; the confirmation runs
`states.batch.decide_batch` (each item on its own, in its own transaction) and the inbox comes
back with one result line per item.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlmodel import Session
from starlette.datastructures import FormData

from api.deps import IdPath
from api.web import session as web
from api.web.approvals import render_inbox, with_stock
from api.web.confirm import BACK, CONFIRM
from states import opinions, runs
from states.batch import MAX_ITEMS, MAX_OPINION, BatchItem, decide_batch
from states.catalog import DONE
from states.db import read_session, unit_of_work
from states.errors import Conflict, DomainError, Forbidden, InvalidInput, NotFound
from states.machines import stage_label
from states.users import Actor

router = APIRouter(include_in_schema=False)

ACTION_LABELS = {"approve": "批量同意", "return": "批量退回"}


@dataclass(frozen=True)
class BatchLine:
    request_id: int
    org_name: str
    what: str


@dataclass(frozen=True)
class ResultLine:
    request_id: int
    org_name: str
    ok: bool
    message: str


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _ids(form: FormData) -> list[int]:
    raw = [v for v in form.getlist("request_id") if isinstance(v, str)]
    return [int(v) for v in raw if v.isdigit() and len(v) <= 10]


def _problem(ids: list[int], action: str, opinion: str) -> str | None:
    if not ids:
        return "请先勾选要审批的申请"
    if len(ids) > MAX_ITEMS:
        return f"一次最多审批 {MAX_ITEMS} 个申请"
    if action not in ACTION_LABELS:
        return "请选择批量同意或批量退回"
    if action == "return" and not opinion:
        return "批量退回须填写意见（或选择一条常用意见）"
    if len(opinion) > MAX_OPINION:
        return f"意见最多 {MAX_OPINION} 字"
    return None


def _line(s: Session, actor: Actor, request_id: int) -> BatchLine:
    """What one chosen request is, for the confirmation (or '未找到' when out of reach)."""
    try:
        req = runs.load_request(s, request_id, actor)
        ctx = runs.load_run(s, req.run_id, actor)
    except NotFound:
        return BatchLine(request_id, "（未找到）", "申请不存在或不在您的管辖范围内")
    tpl = ctx.tpl
    if req.kind == "extension":
        what = f"延期申请：「{stage_label(tpl, req.from_stage)}」阶段"
    else:
        what = f"{stage_label(tpl, req.from_stage)} → {stage_label(tpl, req.to_stage or DONE)}"
    return BatchLine(request_id, ctx.org.name, what)


@router.post("/approvals/batch", dependencies=[Depends(web.csrf_protect)])
def batch(
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: FormData = Depends(web.form_data),
) -> Response:
    ids = list(dict.fromkeys(_ids(form)))
    action = _text(form, "action")
    opinion = with_stock(request, actor, _text(form, "opinion"), _text(form, "stock_opinion"))
    values = {"opinion": opinion, "action": action}
    step = _text(form, "step")
    problem = _problem(ids, action, opinion)
    if step == BACK or problem:
        extra = {"batch": {**values, "ids": ids, "error": problem or ""}}
        return render_inbox(
            request, actor, error=problem, extra=extra, status_code=422 if problem else 200
        )
    if step != CONFIRM:
        with read_session(request.app.state.engine) as s:
            lines = [_line(s, actor, i) for i in ids]
        context = {"lines": lines, "action": action, "label": ACTION_LABELS[action]}
        return web.render(request, "confirm_batch.html", {**context, "opinion": opinion})
    results = decide_batch(
        request.app.state.engine,
        actor,
        [BatchItem(i, action, opinion) for i in ids],  # type: ignore[arg-type]
    )
    with read_session(request.app.state.engine) as s:
        names = {i: _line(s, actor, i).org_name for i in ids}
    out = [ResultLine(r.request_id, names[r.request_id], r.ok, r.message) for r in results]
    return render_inbox(
        request, actor, extra={"results": out, "batch_label": ACTION_LABELS[action]}
    )


def _status(exc: DomainError) -> int:
    return 403 if isinstance(exc, Forbidden) else 409 if isinstance(exc, Conflict) else 422


@router.post("/approvals/opinions", dependencies=[Depends(web.csrf_protect)])
def add_opinion(
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    raw_org = form.get("org_id", "")
    text = form.get("text", "")
    try:
        if not raw_org.isdigit() or len(raw_org) > 10:
            raise InvalidInput("请选择组织", details=[{"field": "org_id"}])
        with unit_of_work(request.app.state.engine) as s:
            opinions.add(s, actor=actor, org_id=int(raw_org), text=text)
    except (InvalidInput, Conflict, Forbidden) as exc:
        extra = {"stock_form": {"text": text, "org_id": raw_org, "error": exc.message}}
        return render_inbox(
            request, actor, error=exc.message, extra=extra, status_code=_status(exc)
        )
    web.flash(request, "已添加常用意见")
    return web.redirect("/approvals#stock")


@router.post("/approvals/opinions/{opinion_id}/delete", dependencies=[Depends(web.csrf_protect)])
def delete_opinion(
    opinion_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    try:
        with unit_of_work(request.app.state.engine) as s:
            opinions.remove(s, actor=actor, opinion_id=opinion_id)  # out of reach: the 404 page
    except Forbidden as exc:
        return render_inbox(request, actor, error=exc.message, status_code=403)
    web.flash(request, "已删除常用意见")
    return web.redirect("/approvals#stock")

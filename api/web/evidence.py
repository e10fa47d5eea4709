"""Evidence pages: one record (/evidence/{id}) with its history, void and amend forms; and the
run page's "使用已有记录" link / unlink buttons.

Same services as the JSON API (`states.evidence`), one `unit_of_work` per change; a rule that
blocks it is shown on the page with nothing written. Out of reach is the 404 page.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from api.deps import IdPath
from api.v1.convert import users_by_id
from api.web import session as web
from api.web.runs import (
    KIND_LABELS,
    EvidenceForm,
    _domain_field_errors,
    _error_status,
    evidence_fields,
    evidence_views,
    form_errors,
    render_run,
)
from states import runs
from states.db import read_session, unit_of_work
from states.errors import Conflict, Forbidden, InvalidInput
from states.evidence import SCHEMAS, corrections, queries, records
from states.users import Actor

router = APIRouter(include_in_schema=False)


def _revision_rows(tpl: Any, kind: str, data: dict[str, Any]) -> list[tuple[str, str]]:
    labels = {f.name: f.label for f in evidence_fields(tpl, kind)}
    return [(labels.get(k, k), str(v)) for k, v in data.items() if v not in (None, "", [])]


def _values(data: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in data.items() if isinstance(v, str | int) and v != ""}


def render_record(
    request: Request,
    evidence_id: int,
    actor: Actor,
    *,
    form: EvidenceForm | None = None,
    void_error: str | None = None,
    status_code: int = 200,
) -> Response:
    with read_session(request.app.state.engine) as s:
        view = queries.record_view(s, evidence_id, actor)
        ev = view.evidence
        run_id = ev.run_id or (view.uses[0].run_id if view.uses else 0)
        tpl = runs.load_run(s, run_id, None).tpl
        users = users_by_id(s, {r.replaced_by for r in view.revisions if r.replaced_by})
        fields = evidence_fields(tpl, ev.kind)
        page = {
            "view": view,
            "ev": ev,
            "item": evidence_views(s, tpl, [ev])[0],
            "run_id": run_id,
            "label": KIND_LABELS.get(ev.kind, ev.kind),
            "revisions": [
                (r, _revision_rows(tpl, ev.kind, r.data or {}), users.get(r.replaced_by or 0))
                for r in reversed(view.revisions)
            ],
            "open": all(u.open for u in view.uses),
            "form": form
            or EvidenceForm(ev.kind, KIND_LABELS.get(ev.kind, ev.kind), fields, _values(ev.data)),
            "void_error": void_error,
        }
        return web.render(request, "evidence.html", page, status_code=status_code)


@router.get("/evidence/{evidence_id}")
def record_page(
    evidence_id: IdPath, request: Request, actor: Actor = Depends(web.page_actor)
) -> Response:
    return render_record(request, evidence_id, actor)


@router.post("/evidence/{evidence_id}/void", dependencies=[Depends(web.csrf_protect)])
def void(
    evidence_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    with read_session(request.app.state.engine) as s:
        corrections.load_record(s, evidence_id, actor)  # out of reach: the 404 page
    reason = form.get("reason", "").strip()
    try:
        with unit_of_work(request.app.state.engine) as s:
            corrections.void(s, evidence_id=evidence_id, actor=actor, reason=reason)
    except (InvalidInput, Conflict, Forbidden) as exc:
        return render_record(
            request, evidence_id, actor, void_error=exc.message, status_code=_error_status(exc)
        )
    web.flash(request, "已作废该材料，它不再计入条件")
    return web.redirect(f"/evidence/{evidence_id}")


@router.post("/evidence/{evidence_id}/amend", dependencies=[Depends(web.csrf_protect)])
def amend(
    evidence_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    with read_session(request.app.state.engine) as s:
        ev, _org = corrections.load_record(s, evidence_id, actor)  # out of reach: the 404 page
        kind, old = ev.kind, dict(ev.data or {})
        tpl = runs.load_run(s, ev.run_id or 0, None).tpl if ev.run_id else None
    fields = evidence_fields(tpl, kind) if tpl is not None else []
    values = {f.name: form.get(f.name, "").strip() for f in fields}
    kept = {k: v for k, v in old.items() if k not in values}  # ticked attendance, member_id
    data = {**kept, **{k: v for k, v in values.items() if v != ""}}
    label = KIND_LABELS.get(kind, kind)

    def again(errors: dict[str, str], message: str, status: int) -> Response:
        page_form = EvidenceForm(kind, label, fields, values, errors, message, open=True)
        return render_record(request, evidence_id, actor, form=page_form, status_code=status)

    try:
        SCHEMAS[kind].model_validate(data)
    except ValidationError as exc:
        return again(form_errors(kind, exc, fields), "请按提示修改后再提交", 422)
    try:
        with unit_of_work(request.app.state.engine) as s:
            reason = form.get("reason", "").strip() or None
            corrections.amend(s, evidence_id=evidence_id, actor=actor, data=data, reason=reason)
    except (InvalidInput, Conflict, Forbidden) as exc:
        errors = _domain_field_errors(exc, [f.name for f in fields])
        return again(errors, exc.message, _error_status(exc))
    web.flash(request, f"已更正{label}，原内容保留在历史中")
    return web.redirect(f"/evidence/{evidence_id}")


def _evidence_id(form: dict[str, str]) -> int:
    raw = form.get("evidence_id", "")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 2**31 else 0


def _link_change(
    request: Request, run_id: int, actor: Actor, form: dict[str, str], on: bool
) -> Response:
    with read_session(request.app.state.engine) as s:
        runs.load_run(s, run_id, actor)  # out of reach: the 404 page
    evidence_id = _evidence_id(form)
    fn = records.link if on else records.unlink
    try:
        with unit_of_work(request.app.state.engine) as s:
            fn(s, run_id=run_id, actor=actor, evidence_id=evidence_id)
    except (InvalidInput, Conflict, Forbidden) as exc:
        return render_run(request, run_id, actor, error=exc.message, status_code=_error_status(exc))
    web.flash(request, "已将该记录计入本阶段" if on else "该记录已不再计入本阶段")
    return web.redirect(f"/runs/{run_id}#evidence")


@router.post("/runs/{run_id}/link", dependencies=[Depends(web.csrf_protect)])
def link(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    return _link_change(request, run_id, actor, form, True)


@router.post("/runs/{run_id}/unlink", dependencies=[Depends(web.csrf_protect)])
def unlink(
    run_id: IdPath,
    request: Request,
    actor: Actor = Depends(web.page_actor),
    form: dict[str, str] = Depends(web.form_fields),
) -> Response:
    return _link_change(request, run_id, actor, form, False)

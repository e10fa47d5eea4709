"""Launching a campaign from the pages (organisers, admins): form → preview → confirm.

The same service and rules as `POST /api/v1/campaigns`: the root must be in reach (else 404) and
the launcher must be an organiser or admin there or above; schedule errors name the stage.
A preview carries a one-time key, so confirming twice (a double click) launches once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import and_, or_
from sqlmodel import Session, col, select
from starlette.datastructures import FormData

from api.deps import MAX_ID, engine_of
from api.web.session import (
    csrf_protect,
    flash,
    form_data,
    not_found,
    page_actor,
    redirect,
    render,
)
from states import idempotency
from states.campaigns import LAUNCH_ROLES, count_participants, launch_campaign, past_deadlines
from states.catalog import Template, builtin_templates
from states.db import read_session, unit_of_work
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import ORG_KINDS, Organisation, OrgKind
from states.orgs import subtree_filter
from states.schedule import StageDeadline, default_schedule, parse_schedule
from states.timeutil import local_date, utcnow
from states.users import Actor
from states.workcal import WorkCalendar, coverage_message, covered, load_calendar

router = APIRouter(include_in_schema=False)
MODES = {"date": "指定日期", "working_days": "N 个工作日", "days": "N 个自然日"}
ROOT_KINDS = (OrgKind.COMMITTEE.value, OrgKind.GENERAL_BRANCH.value)
MAX_ROOTS = 300


@dataclass
class StageInput:
    """One stage's deadline as the form shows it."""

    id: str
    name: str
    mode: str
    date: str
    days: str
    default: str
    error: str | None = None


@dataclass
class LaunchForm:
    """What the organiser entered; `errors` by field name (template, root, kinds, name)."""

    template: Template
    root_id: int | None
    kinds: list[str]
    name: str
    stages: list[StageInput]
    errors: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def schedule(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for st in self.stages:
            if st.mode == "date":
                out[st.id] = {"date": st.date}
            else:
                out[st.id] = {st.mode: int(st.days)}
        return out

    def fingerprint(self) -> str:
        body = json.dumps(
            [self.template.key, self.root_id, self.kinds, self.name, self.schedule()],
            ensure_ascii=False,
            sort_keys=True,
        )
        return idempotency.request_hash("POST", "/campaigns/new", body.encode())


def _describe(spec: StageDeadline) -> str:
    if spec.date is not None:
        return spec.date.isoformat()
    if spec.working_days is not None:
        return f"进入该阶段后 {spec.working_days} 个工作日"
    return f"进入该阶段后 {spec.days} 个自然日"


def _projected(
    tpl: Template, defaults: dict[str, StageDeadline], today: date, calendar: WorkCalendar
) -> dict[str, date]:
    """Return a date per stage: a dated phase's own date; for a stage counted in days, an
    estimate as if each stage ended on its default deadline, starting today."""
    out: dict[str, date] = {}
    entered = today
    for st in tpl.stages:
        spec = defaults.get(st.id)
        if spec is None:
            continue
        if spec.date is not None:
            out[st.id] = spec.date  # the template's own date, even if already past
            entered = max(spec.date, entered)
            continue
        if spec.working_days is not None:
            day = calendar.add_working_days(entered, spec.working_days)
        else:
            day = entered + timedelta(days=spec.days or 0)
        out[st.id] = entered = max(day, entered)
    return out


def blank_form(s: Session, tpl: Template, root_id: int | None) -> LaunchForm:
    """Return the form for `tpl`, its deadlines pre-filled from the template's schedule."""
    today = local_date(utcnow())
    defaults = default_schedule(tpl, today.year)
    projected = _projected(tpl, defaults, today, load_calendar(s))
    counted = {st.id for st in tpl.stages if (spec := defaults.get(st.id)) and spec.working_days}
    years = sorted({d.year for sid, d in projected.items() if sid in counted})
    notes = [coverage_message(y).split("；")[0] for y in years if not covered(y)]
    stages = []
    for st in tpl.stages:
        spec = defaults.get(st.id)
        mode = "date"
        days = ""
        if spec is not None and spec.working_days is not None:
            mode, days = "working_days", str(spec.working_days)
        elif spec is not None and spec.days is not None:
            mode, days = "days", str(spec.days)
        day = projected.get(st.id)
        stages.append(
            StageInput(
                id=st.id,
                name=st.name,
                mode=mode,
                date=day.isoformat() if day else "",
                days=days,
                default=_describe(spec) if spec else "模板未规定",
            )
        )
    form = LaunchForm(tpl, root_id, list(tpl.participants), "", stages)
    form.notes = [f"预填日期为估算：{n}" for n in notes]
    past = [st.name for st in stages if st.date and date.fromisoformat(st.date) < today]
    if past:
        form.notes.append(f"模板默认日程中 {'、'.join(past)} 的截止日期已过，请改为今后的日期")
    return form


def read_form(tpl: Template, form: FormData) -> LaunchForm:
    """Return the submitted form with every field's problem noted (nothing looked up yet)."""
    today = local_date(utcnow())
    defaults = default_schedule(tpl, today.year)
    errors: dict[str, str] = {}
    raw_root = str(form.get("root") or "")
    root_id = int(raw_root) if raw_root.isdigit() and 0 < int(raw_root) <= MAX_ID else None
    if root_id is None:
        errors["root"] = "请选择发起组织"
    kinds = [str(k) for k in form.getlist("kinds")]
    if not kinds:
        errors["kinds"] = "请至少选择一种参与组织类型"
    elif any(k not in ORG_KINDS for k in kinds):
        errors["kinds"] = f"未知的组织类型（可选：{'、'.join(ORG_KINDS)}）"
    name = str(form.get("name") or "").strip()
    if len(name) > 200:
        errors["name"] = "活动名称不能超过 200 个字"
    stages = []
    for st in tpl.stages:
        spec = defaults.get(st.id)
        item = StageInput(
            id=st.id,
            name=st.name,
            mode=str(form.get(f"mode_{st.id}") or "date"),
            date=str(form.get(f"date_{st.id}") or "").strip(),
            days=str(form.get(f"days_{st.id}") or "").strip(),
            default=_describe(spec) if spec else "模板未规定",
        )
        item.error = _stage_error(item)
        stages.append(item)
    return LaunchForm(tpl, root_id, kinds, name, stages, errors)


def _stage_error(item: StageInput) -> str | None:
    if item.mode not in MODES:
        return "请选择截止方式"
    if item.mode == "date":
        if not item.date:
            return "请选择截止日期"
        try:
            date.fromisoformat(item.date)
        except ValueError:
            return "日期格式应为 年-月-日，例如 2026-12-31"
        return None
    if not item.days.isdigit() or not 1 <= int(item.days) <= 366:
        return "天数须为 1 至 366 之间的整数"
    return None


def _has_errors(form: LaunchForm) -> bool:
    return bool(form.errors) or any(st.error for st in form.stages)


def launch_roots(s: Session, actor: Actor) -> list[Organisation]:
    """Return the organisations the actor may launch over: her launch grants and the committees
    and general branches below them, in path order."""
    grants = [g for g in actor.grants if g.role in LAUNCH_ROLES]
    if not grants:
        return []
    below = or_(*(subtree_filter(g.org_path) for g in grants))
    own = col(Organisation.id).in_([g.org_id for g in grants])
    stmt = (
        select(Organisation)
        .where(or_(own, and_(below, col(Organisation.kind).in_(ROOT_KINDS))))
        .order_by(col(Organisation.path))
        .limit(MAX_ROOTS)
    )
    return list(s.execute(stmt).scalars())


def _root(s: Session, actor: Actor, root_id: int) -> Organisation:
    """Return the root if the actor may launch over it: NotFound out of reach, else Forbidden."""
    org = s.get(Organisation, root_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在")
    if not actor.holds_here_or_above(org.id or 0, org.path, LAUNCH_ROLES):
        raise Forbidden("只有本组织或上级的组织员、管理员可以在此发起活动")
    s.expunge(org)  # used after the read session ends (its rollback would expire it)
    return org


def _check(s: Session, actor: Actor, form: LaunchForm) -> tuple[Organisation | None, int]:
    """Validate against the database; note errors on the form; return the root and run count."""
    root = None
    runs = 0
    if form.root_id is not None:
        try:
            root = _root(s, actor, form.root_id)
        except Forbidden as exc:
            form.errors["root"] = exc.message
    if _has_errors(form):
        return root, runs
    try:
        parse_schedule(form.template, form.schedule(), local_date(utcnow()).year)
    except InvalidInput as exc:
        _schedule_errors(form, exc)
        return root, runs
    if root is not None:
        runs = count_participants(s, root, form.kinds)
        if runs == 0:
            form.errors["kinds"] = f"「{root.name}」下没有类型为 {'、'.join(form.kinds)} 的组织"
    return root, runs


def _schedule_errors(form: LaunchForm, exc: InvalidInput) -> None:
    by_stage = {st.id: st for st in form.stages}
    details = exc.details if isinstance(exc.details, list) else []
    for d in details:
        parts = str(d.get("field", "")).split(".")
        st = by_stage.get(parts[1]) if len(parts) > 1 else None
        if st is not None:
            st.error = "截止规则有误：" + str(d.get("message", ""))
    if not any(st.error for st in form.stages):
        form.errors["schedule"] = exc.message


def _template(key: str | None) -> Template | None:
    templates = builtin_templates()
    if key is None:
        return next(iter(sorted(templates.values(), key=lambda t: t.key)), None)
    return templates.get(key)


def _page(
    request: Request, s: Session, actor: Actor, form: LaunchForm, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "launch.html",
        {
            "form": form,
            "templates": sorted(builtin_templates().values(), key=lambda t: t.key),
            "roots": launch_roots(s, actor),
            "kinds": ORG_KINDS,
            "modes": MODES,
        },
        status_code=status_code,
    )


def _may_launch(actor: Actor) -> bool:
    return any(actor.has_role(r) for r in LAUNCH_ROLES)


@router.get("/campaigns/new", response_class=HTMLResponse)
def launch_form(
    request: Request,
    actor: Annotated[Actor, Depends(page_actor)],
    template: Annotated[str | None, Query(max_length=64)] = None,
    root: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> HTMLResponse:
    """Step 1: template, root, kinds, deadlines (pre-filled from the template)."""
    if not _may_launch(actor):
        raise Forbidden("只有组织员或管理员可以发起活动")
    tpl = _template(template)
    if tpl is None:
        return not_found(request)
    with read_session(engine_of(request)) as s:
        if root is not None:
            try:
                _root(s, actor, root)
            except NotFound:
                return not_found(request)
            except Forbidden:
                root = None
        form = blank_form(s, tpl, root)
        return _page(request, s, actor, form)


@router.post(
    "/campaigns/new/preview", response_class=HTMLResponse, dependencies=[Depends(csrf_protect)]
)
def launch_preview(
    request: Request,
    actor: Annotated[Actor, Depends(page_actor)],
    data: Annotated[FormData, Depends(form_data)],
) -> HTMLResponse:
    """Step 2: validate and show how many runs the launch will create; nothing is written."""
    if not _may_launch(actor):
        raise Forbidden("只有组织员或管理员可以发起活动")
    tpl = _template(str(data.get("template") or ""))
    if tpl is None:
        return not_found(request)
    form = read_form(tpl, data)
    with read_session(engine_of(request)) as s:
        root, runs = _check(s, actor, form)  # NotFound → the 404 page
        if _has_errors(form) or root is None:
            return _page(request, s, actor, form, status_code=422)
    return _preview_page(request, form, root, runs)


def _past(form: LaunchForm) -> list[dict[str, str]]:
    """Return the stages of a checked form whose dated deadline is already past."""
    now = utcnow()
    plan = parse_schedule(form.template, form.schedule(), local_date(now).year)
    return past_deadlines(form.template, plan, now)


def _preview_page(
    request: Request,
    form: LaunchForm,
    root: Organisation,
    runs: int,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Step 2's page; stages already past need the "仍然发起" box ticked to confirm."""
    return render(
        request,
        "launch_preview.html",
        {
            "form": form,
            "root": root,
            "runs": runs,
            "modes": MODES,
            "past": _past(form),
            "error": error,
            "once": secrets.token_urlsafe(16),
            "default_name": f"{form.template.name}（{local_date(utcnow()).year}）",
        },
        status_code=status_code,
    )


@router.post("/campaigns/new", dependencies=[Depends(csrf_protect)])
def launch_confirm(
    request: Request,
    actor: Annotated[Actor, Depends(page_actor)],
    data: Annotated[FormData, Depends(form_data)],
) -> Response:
    """Step 3: launch (or go back to the form with the values kept)."""
    if not _may_launch(actor):
        raise Forbidden("只有组织员或管理员可以发起活动")
    tpl = _template(str(data.get("template") or ""))
    if tpl is None:
        return not_found(request)
    form = read_form(tpl, data)
    engine = engine_of(request)
    if data.get("action") != "confirm":
        with read_session(engine) as s:
            return _page(request, s, actor, form)
    with read_session(engine) as s:
        root, runs = _check(s, actor, form)
        if _has_errors(form) or root is None:
            return _page(request, s, actor, form, status_code=422)
    allow_past = data.get("allow_past") == "1"
    if not allow_past and _past(form):
        error = "有阶段的截止日期已过：请返回修改日期，或勾选“仍然发起”后再确认"
        return _preview_page(request, form, root, runs, error=error, status_code=422)
    key = "web-launch:" + str(data.get("once") or "")[:64]
    fingerprint = form.fingerprint()
    try:
        with unit_of_work(engine) as s:
            replay = idempotency.claim(s, user_id=actor.user_id, key=key, fingerprint=fingerprint)
    except (Conflict, InvalidInput) as exc:
        flash(request, exc.message, "warning")
        return redirect("/campaigns")
    if replay is not None:
        return redirect(f"/campaigns/{replay.body['id']}")
    try:
        with unit_of_work(engine) as s:
            campaign = launch_campaign(
                s,
                template_key=tpl.key,
                root_code=root.code,
                kinds=form.kinds,
                schedule=form.schedule(),
                name=form.name or None,
                actor=actor,
                allow_past=allow_past,
            )
            body = {"id": campaign.id, "runs": campaign.run_count}
            idempotency.complete(s, user_id=actor.user_id, key=key, status=201, body=body)
    except BaseException as exc:
        with unit_of_work(engine) as s:
            idempotency.release(s, user_id=actor.user_id, key=key)
        if isinstance(exc, InvalidInput):
            form.errors["schedule"] = exc.message
            with read_session(engine) as s:
                return _page(request, s, actor, form, status_code=422)
        raise
    flash(request, f"活动已发起：创建了 {body['runs']} 个支部的创建进度")
    return redirect(f"/campaigns/{body['id']}")

"""The supervision group's pages (督导).

* `/supervision` – findings (督导意见) in reach, open ones first, soonest due first; for a
  supervisor, the forms to record a finding on an organisation (by its code) and to issue a 通报
  to a subtree (one named organisation a line: `编码 事由`).
* `/findings/{id}` – one finding: the branch's leaders answer it (整改情况), the supervisor closes
  it (办结).

Typed codes that name nothing in reach are refused on the form (the API answers 404); ids in
addresses outside reach are the 404 page.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlmodel import Session

from api.deps import IdPath
from api.web import session as web
from states.db import read_session, unit_of_work
from states.errors import DomainError, InvalidInput, NotFound
from states.models import Organisation, Role
from states.orgs import get_org_by_code
from states.supervision import service
from states.timeutil import local_date, utcnow
from states.users import Actor

router = APIRouter(include_in_schema=False)
ActorDep = Annotated[Actor, Depends(web.page_actor)]
FormDep = Annotated[dict[str, str], Depends(web.form_fields)]
PAGE = 20
DESK = "/supervision"
STATUS_TEXT = {"open": "待回复", "answered": "已回复", "closed": "已办结"}


@router.get(DESK)
def desk(
    request: Request, actor: ActorDep, page: Annotated[int, Query(ge=1, le=100_000)] = 1
) -> Response:
    with read_session(request.app.state.engine) as s:
        rows, total = service.findings_in_reach(s, actor, limit=PAGE, offset=(page - 1) * PAGE)
        ctx = {
            "findings": rows,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE)),
            "status_text": STATUS_TEXT,
            "supervisor": actor.has_role(Role.SUPERVISOR),
            "today": local_date(utcnow()).isoformat(),
        }
        return web.render(request, "supervision.html", ctx)


def _org(s: Session, actor: Actor, code: str, field: str) -> Organisation:
    """The organisation typed by code, within reach, else InvalidInput naming the field."""
    try:
        org = get_org_by_code(s, code.strip())
    except NotFound:
        org = None
    if org is None or not actor.reaches(org.path):
        raise InvalidInput(f"组织编码不存在或不在管辖范围内：{code}", details={"field": field})
    return org


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidInput("请填写整改期限", details={"field": "due"}) from None


def _refused(request: Request, exc: DomainError, back: str = DESK) -> Response:
    if isinstance(exc, NotFound) and back != DESK:
        raise exc
    web.flash(request, exc.message, "error")
    return web.redirect(back)


@router.post(DESK + "/findings", dependencies=[Depends(web.csrf_protect)])
def add_finding(request: Request, actor: ActorDep, form: FormDep) -> Response:
    try:
        with unit_of_work(request.app.state.engine) as s:
            org = _org(s, actor, form.get("org_code", ""), "org_code")
            f = service.add_finding(
                s, actor, text=form.get("text", ""), due=_date(form.get("due", "")), org_id=org.id
            )
            page = service.finding_page(f.id or 0)
    except DomainError as exc:
        return _refused(request, exc)
    web.flash(request, "督导意见已发出，已通知该组织的书记和委员")
    return web.redirect(page)


def parse_items(text: str, s: Session, actor: Actor) -> list[service.NamedItem]:
    """`编码 事由` lines into named organisations (a code outside reach is refused)."""
    items = []
    for line in text.splitlines():
        if not line.strip():
            continue
        code, _, reason = line.strip().partition(" ")
        org = _org(s, actor, code, "orgs")
        items.append(service.NamedItem(org.id or 0, reason.strip()))
    return items


@router.post(DESK + "/notices", dependencies=[Depends(web.csrf_protect)])
def issue_notice(request: Request, actor: ActorDep, form: FormDep) -> Response:
    try:
        with unit_of_work(request.app.state.engine) as s:
            org = _org(s, actor, form.get("org_code", ""), "org_code")
            c = service.issue_circular(
                s,
                actor,
                org_id=org.id or 0,
                title=form.get("title", ""),
                text=form.get("text", ""),
                items=parse_items(form.get("orgs", ""), s, actor),
            )
            page = service.circular_page(c.id or 0)
    except DomainError as exc:
        return _refused(request, exc)
    web.flash(request, "通报已发布，已送达该组织之下各级书记、委员和群机器人")
    return web.redirect(page)


@router.get("/findings/{finding_id}")
def finding_page(finding_id: IdPath, request: Request, actor: ActorDep) -> Response:
    with read_session(request.app.state.engine) as s:
        finding, org = service.get_finding(s, actor, finding_id)
        ctx = {
            "finding": finding,
            "org": org,
            "status": STATUS_TEXT.get(finding.status, finding.status),
            "may_answer": finding.status != "closed"
            and actor.holds_on(org.id or 0, service.ANSWERERS),
            "may_close": finding.status != "closed"
            and actor.holds_here_or_above(org.id or 0, org.path, service.ISSUERS),
        }
        return web.render(request, "finding.html", ctx)


@router.post("/findings/{finding_id}/response", dependencies=[Depends(web.csrf_protect)])
def respond(finding_id: IdPath, request: Request, actor: ActorDep, form: FormDep) -> Response:
    back = service.finding_page(finding_id)
    try:
        with unit_of_work(request.app.state.engine) as s:
            service.respond(s, actor, finding_id, form.get("response", ""))
    except DomainError as exc:
        return _refused(request, exc, back)
    web.flash(request, "已回复，已通知提出意见的督导")
    return web.redirect(back)


@router.post("/findings/{finding_id}/close", dependencies=[Depends(web.csrf_protect)])
def close(finding_id: IdPath, request: Request, actor: ActorDep) -> Response:
    back = service.finding_page(finding_id)
    try:
        with unit_of_work(request.app.state.engine) as s:
            service.close(s, actor, finding_id)
    except DomainError as exc:
        return _refused(request, exc, back)
    web.flash(request, "督导意见已办结")
    return web.redirect(back)

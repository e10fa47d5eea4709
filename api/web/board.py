"""Staff pages of the 公示 board (login required, the run's reach).

* `/runs/{id}/board` – the live board's address, QR code and print link; publish (masking, end
  date) or revoke; the 意见箱 messages left on the branch's boards.
* `/campaigns/{id}/boards?org_id=` – every live board of the campaign's branches under one
  organisation, a QR card each, to print; and the form publishing them all at once.

Writes go through `states.board.service` in one `unit_of_work`, like the JSON API.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlmodel import Session, col, select

from api.deps import MAX_ID, IdPath
from api.web import session as web
from api.web.public_board import public_url, qr_svg
from states import public_links
from states.board import messages, service
from states.board.models import PublicBoard
from states.db import read_session, unit_of_work
from states.errors import DomainError, InvalidInput, NotFound
from states.models import Organisation, Run
from states.orgs import subtree_filter
from states.queries import visible_campaign
from states.run_core import load_run
from states.timeutil import end_of_local_day
from states.users import Actor

router = APIRouter(include_in_schema=False)
ActorDep = Annotated[Actor, Depends(web.page_actor)]
FormDep = Annotated[dict[str, str], Depends(web.form_fields)]
MESSAGES_PAGE = 50


def _until(text: str) -> datetime | None:
    """The end date typed in the form (23:59:59 Beijing time that day), or None if blank."""
    text = text.strip()
    if not text:
        return None
    try:
        return end_of_local_day(date.fromisoformat(text))
    except ValueError:
        raise InvalidInput("请按 年-月-日 填写截止日期", details=[{"field": "until"}]) from None


def _board_view(request: Request, board: PublicBoard) -> dict[str, Any]:
    url = public_url(request, public_links.token_for("board", board.nonce))
    return {"row": board, "url": url, "qr": qr_svg(url, scale=3)}


def _context(s: Session, request: Request, run_id: int, actor: Actor, offset: int) -> dict:
    ctx = load_run(s, run_id, actor)  # out of reach: the 404 page
    live = service.live_board(s, run_id)
    rows, total = messages.messages_of(s, run_id, limit=MESSAGES_PAGE, offset=offset)
    return {
        "run": ctx.run,
        "org": ctx.org,
        "campaign": ctx.campaign,
        "live": _board_view(request, live) if live else None,
        "history": [b for b in service.boards_of(s, run_id) if not live or b.id != live.id],
        "may_publish": service.may_publish(actor, ctx.org),
        "messages": rows,
        "total": total,
        "offset": offset,
        "page_size": MESSAGES_PAGE,
    }


def _render(
    request: Request,
    run_id: int,
    actor: Actor,
    *,
    offset: int = 0,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    with read_session(request.app.state.engine) as s:
        context = _context(s, request, run_id, actor, offset)
        s.expunge_all()  # keep what was read: the session's rollback would expire it
    context["error"] = error
    return web.render(request, "board.html", context, status_code=status_code)


@router.get("/runs/{run_id}/board")
def board_page(
    run_id: IdPath,
    request: Request,
    actor: ActorDep,
    offset: int = Query(0, ge=0, le=10_000_000, description="跳过的留言条数"),
) -> Response:
    return _render(request, run_id, actor, offset=offset)


def _refused(request: Request, run_id: int, actor: Actor, exc: DomainError) -> Response:
    if isinstance(exc, NotFound):
        raise exc
    status = 403 if exc.code == "forbidden" else 422
    return _render(request, run_id, actor, error=exc.message, status_code=status)


@router.post("/runs/{run_id}/board", dependencies=[Depends(web.csrf_protect)])
def publish(run_id: IdPath, request: Request, actor: ActorDep, form: FormDep) -> Response:
    with read_session(request.app.state.engine) as s:
        load_run(s, run_id, actor)  # out of reach: the 404 page before the form is read
    try:
        until = _until(form.get("until", ""))
        with unit_of_work(request.app.state.engine) as s:
            p = service.publish(
                s, run_id=run_id, actor=actor, mask_names=form.get("mask") != "0", until=until
            )
    except DomainError as exc:
        return _refused(request, run_id, actor, exc)
    web.flash(request, "公示已发布" if p.created else "公示设置已更新，公开地址不变")
    return web.redirect(f"/runs/{run_id}/board")


@router.post("/runs/{run_id}/board/revoke", dependencies=[Depends(web.csrf_protect)])
def revoke(run_id: IdPath, request: Request, actor: ActorDep) -> Response:
    try:
        with unit_of_work(request.app.state.engine) as s:
            service.revoke(s, run_id=run_id, actor=actor)
    except DomainError as exc:
        return _refused(request, run_id, actor, exc)
    web.flash(request, "公示已撤销，原地址已失效")
    return web.redirect(f"/runs/{run_id}/board")


# --------------------------------------------------------------------------- a committee's boards


def _cards(s: Session, request: Request, campaign_id: int, org: Organisation) -> list[dict]:
    rows = s.execute(
        select(Run.id, Organisation.name)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(Run.campaign_id == campaign_id, subtree_filter(org.path))
        .where(Organisation.kind == service.BRANCH_KIND)
        .order_by(Organisation.path)
    ).all()
    cards = []
    for run_id, name in rows:
        live = service.live_board(s, int(run_id))
        cards.append(
            {"run_id": run_id, "name": name, **(_board_view(request, live) if live else {})}
        )
    return cards


def _campaign_context(
    s: Session, request: Request, campaign_id: int, org_id: int | None, actor: Actor
) -> dict[str, Any]:
    campaign, root, _ = visible_campaign(s, campaign_id, actor)  # out of reach: 404
    org = s.get(Organisation, org_id) if org_id else root
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    return {
        "campaign": campaign,
        "org": org,
        "cards": _cards(s, request, campaign_id, org),
        "may_publish": service.may_publish(actor, org),
    }


@router.get("/campaigns/{campaign_id}/boards")
def campaign_boards(
    campaign_id: IdPath,
    request: Request,
    actor: ActorDep,
    org_id: int | None = Query(None, ge=1, le=MAX_ID, description="党委或党总支"),
) -> Response:
    with read_session(request.app.state.engine) as s:
        context = _campaign_context(s, request, campaign_id, org_id, actor)
        s.expunge_all()
    return web.render(request, "board_print.html", context)


@router.post("/campaigns/{campaign_id}/boards", dependencies=[Depends(web.csrf_protect)])
def publish_all(campaign_id: IdPath, request: Request, actor: ActorDep, form: FormDep) -> Response:
    with read_session(request.app.state.engine) as s:
        root = visible_campaign(s, campaign_id, actor)[1]  # out of reach: 404 first
    typed = form.get("org_id", "")
    org_id = int(typed) if typed.isdigit() and len(typed) < 11 else root.id or 0
    org_id = org_id if org_id <= MAX_ID else 0
    try:
        until = _until(form.get("until", ""))
        with unit_of_work(request.app.state.engine) as s:
            done = service.publish_campaign(
                s,
                campaign_id=campaign_id,
                org_id=org_id,
                actor=actor,
                mask_names=form.get("mask") != "0",
                until=until,
            )
    except DomainError as exc:
        if isinstance(exc, NotFound):
            raise
        web.flash(request, exc.message, "error")
        return web.redirect(f"/campaigns/{campaign_id}/boards?org_id={org_id}")
    web.flash(request, f"已为 {len(done)} 个支部发布公示")
    return web.redirect(f"/campaigns/{campaign_id}/boards?org_id={org_id}")

"""The supervision group (督导组): findings (督导意见) with a deadline, and 通报 to a subtree."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import MAX_ID, Idem, IdPath, Page, idempotency_key, page, reader, write
from api.errors import responses
from api.security import Bearer, authenticated, caller
from api.v1.bulletins import CircularOut, circular_out
from states.models import Organisation
from states.supervision import service
from states.supervision.models import Finding
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["督导"])

STATUS_TEXT = {"open": "待回复", "answered": "已回复", "closed": "已办结"}


class FindingIn(S.In):
    text: str = Field(min_length=1, max_length=service.MAX_TEXT, description="督导意见")
    due: dt.date = Field(description="整改回复期限（北京时间当天 23:59:59）")


class ResponseIn(S.In):
    text: str = Field(min_length=1, max_length=service.MAX_TEXT, description="整改情况")


class NamedOrgIn(S.In):
    org_id: int = Field(ge=1, le=MAX_ID)
    reason: str = Field(min_length=1, max_length=service.MAX_REASON, description="通报事由")


class CircularIn(S.In):
    title: str = Field(min_length=1, max_length=service.MAX_TITLE)
    text: str = Field(min_length=1, max_length=20_000)
    orgs: list[NamedOrgIn] = Field(
        min_length=1, max_length=service.MAX_ITEMS, description="被通报的单位（须在本组织之下）"
    )


class FindingOut(S.Out):
    id: int
    org: S.OrgBrief
    run_id: int | None
    text: str
    due: S.LocalTime
    status: Literal["open", "answered", "closed"]
    status_text: str
    escalation_level: int
    created_by: int
    created_at: S.LocalTime
    response: str | None
    responded_at: S.LocalTime | None
    closed_at: S.LocalTime | None
    page_url: str


class FindingPage(S.Page[FindingOut]):
    pass


def finding_out(f: Finding, org: Organisation) -> FindingOut:
    return FindingOut(
        id=f.id or 0,
        org=S.OrgBrief.model_validate(org),
        run_id=f.run_id,
        text=f.text,
        due=f.due,
        status=f.status,
        status_text=STATUS_TEXT.get(f.status, f.status),
        escalation_level=f.escalation_level,
        created_by=f.created_by,
        created_at=f.created_at,
        response=f.response,
        responded_at=f.responded_at,
        closed_at=f.closed_at,
        page_url=service.finding_page(f.id or 0),
    )


def _added(s: Session, f: Finding) -> FindingOut:
    return finding_out(f, s.get(Organisation, f.org_id))  # type: ignore[arg-type]


@router.post(
    "/runs/{run_id}/findings",
    status_code=201,
    summary="对支部创建进度提出督导意见（限期整改回复）",
    response_model=FindingOut,
    responses=responses(401, 403, 404, 422),
)
def run_finding(
    run_id: IdPath,
    body: FindingIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """本级或上级督导提出；通知支部书记和委员，到期前提醒，逾期逐级督办。"""

    def change(s: Session, actor: Actor) -> FindingOut:
        f = service.add_finding(s, actor, text=body.text, due=body.due, run_id=run_id)
        return _added(s, f)

    return write(request, who, idem, 201, change)


@router.post(
    "/orgs/{org_id}/findings",
    status_code=201,
    summary="对组织提出督导意见（限期整改回复）",
    response_model=FindingOut,
    responses=responses(401, 403, 404, 422),
)
def org_finding(
    org_id: IdPath,
    body: FindingIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    def change(s: Session, actor: Actor) -> FindingOut:
        f = service.add_finding(s, actor, text=body.text, due=body.due, org_id=org_id)
        return _added(s, f)

    return write(request, who, idem, 201, change)


@router.get(
    "/findings",
    summary="管辖范围内的督导意见（最早到期在前）",
    response_model=FindingPage,
    responses=responses(401, 422),
)
def list_findings(
    open_only: bool = Query(False, alias="open", description="只看未办结的"),
    p: Page = Depends(page),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
) -> FindingPage:
    rows, total = service.findings_in_reach(
        s, actor, open_only=open_only, limit=p.limit, offset=p.offset
    )
    items = [finding_out(f, o) for f, o in rows]
    return FindingPage(items=items, total=total, limit=p.limit, offset=p.offset)


@router.get(
    "/findings/{finding_id}",
    summary="一条督导意见",
    response_model=FindingOut,
    responses=responses(401, 404, 422),
)
def get_finding(
    finding_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> FindingOut:
    return finding_out(*service.get_finding(s, actor, finding_id))


@router.post(
    "/findings/{finding_id}/response",
    summary="回复督导意见（整改情况）",
    response_model=FindingOut,
    responses=responses(401, 403, 404, 409, 422),
)
def respond(
    finding_id: IdPath,
    body: ResponseIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """被督导组织的书记或委员回复；通知提出意见的督导。已办结的不能回复（409）。"""

    def change(s: Session, actor: Actor) -> FindingOut:
        return _added(s, service.respond(s, actor, finding_id, body.text))

    return write(request, who, idem, 200, change)


@router.post(
    "/findings/{finding_id}/close",
    summary="办结督导意见",
    response_model=FindingOut,
    responses=responses(401, 403, 404, 409, 422),
)
def close(
    finding_id: IdPath,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    def change(s: Session, actor: Actor) -> FindingOut:
        return _added(s, service.close(s, actor, finding_id))

    return write(request, who, idem, 200, change)


@router.post(
    "/orgs/{org_id}/notices",
    status_code=201,
    summary="发布通报（下发至本组织之下）",
    response_model=CircularOut,
    responses=responses(401, 403, 404, 422),
)
def issue_notice(
    org_id: IdPath,
    body: CircularIn,
    request: Request,
    who: Bearer = Depends(caller),
    idem: Idem | None = Depends(idempotency_key),
) -> object:
    """本级或上级督导发布。所列每个单位须在本组织之下且在发布者管辖范围内，否则 404、不发送。
    通报送达本组织之下各级书记、委员的消息中心与各组织的群机器人，并进入存档。"""

    def change(s: Session, actor: Actor) -> CircularOut:
        items = [service.NamedItem(o.org_id, o.reason) for o in body.orgs]
        c = service.issue_circular(
            s, actor, org_id=org_id, title=body.title, text=body.text, items=items
        )
        return circular_out(*service.get_circular(s, actor, c.id or 0))

    return write(request, who, idem, 201, change)

"""The archive of 简报 and 通报: an organisation's listing, each item as JSON and as a PDF.

A weekly 简报 is `/api/v1/bulletins/{id}`; a 通报 is `/api/v1/circulars/{id}` (its own id
space); the listing `/api/v1/orgs/{id}/bulletins` holds both, each with `kind` and its addresses.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from pydantic import Field
from sqlmodel import Session

from api import schemas as S
from api.deps import IdPath, Page, page, reader
from api.errors import responses
from api.security import authenticated
from states.models import Organisation
from states.supervision import archive, pdf
from states.supervision.models import Circular, CircularItem
from states.supervision.service import get_circular
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["简报与通报"])
PDF_TYPE = "application/pdf"


class ArchiveItem(S.Out):
    kind: Literal["bulletin", "circular"] = Field(description="bulletin 简报 / circular 通报")
    id: int = Field(description="在本类中的编号")
    title: str
    org_id: int = Field(description="简报所属或通报发布的组织")
    org_name: str
    created_at: S.LocalTime
    url: str = Field(description="JSON 地址")
    pdf_url: str = Field(description="PDF 地址")
    page_url: str = Field(description="网页（可打印）地址")


class ArchivePage(S.Page[ArchiveItem]):
    pass


class BulletinOut(S.Out):
    id: int
    campaign_id: int
    org: S.OrgBrief
    period: str = Field(description="ISO 周，如 2026-W48")
    title: str
    as_of: S.LocalTime
    created_at: S.LocalTime
    data: dict[str, Any] = Field(description="简报内容：总数、完成、逾期、各阶段、通报名单等")
    pdf_url: str
    page_url: str


class CircularOrg(S.Out):
    org: S.OrgBrief
    reason: str


class CircularOut(S.Out):
    id: int
    org: S.OrgBrief = Field(description="发布通报的组织（通报下发至其下级）")
    title: str
    text: str
    created_at: S.LocalTime
    orgs: list[CircularOrg] = Field(description="被通报的单位及事由")
    pdf_url: str
    page_url: str


def _item(e: archive.Entry) -> ArchiveItem:
    api = f"/api/v1/{e.kind}s/{e.id}"
    return ArchiveItem(
        kind=e.kind,
        id=e.id,
        title=e.title,
        org_id=e.org_id,
        org_name=e.org_name,
        created_at=e.created_at,
        url=api,
        pdf_url=api + ".pdf",
        page_url=e.page,
    )


@router.get(
    "/orgs/{org_id}/bulletins",
    summary="组织的简报与通报存档（分页，最新在前）",
    response_model=ArchivePage,
    responses=responses(401, 404, 422),
)
def org_archive(
    org_id: IdPath,
    p: Page = Depends(page),
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
) -> ArchivePage:
    """本组织的每周简报，以及发布到本组织（或其上级发布、覆盖本组织）的通报。"""
    org = archive.archive_org(s, actor, org_id)
    entries, total = archive.listing(s, org, limit=p.limit, offset=p.offset)
    return ArchivePage(
        items=[_item(e) for e in entries], total=total, limit=p.limit, offset=p.offset
    )


@router.get(
    "/bulletins/{bulletin_id}.pdf",
    summary="简报 PDF（含图表）",
    response_class=Response,
    responses={200: {"content": {PDF_TYPE: {}}}, **responses(401, 404, 422)},
)
def bulletin_pdf(
    bulletin_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> Response:
    bulletin, org = archive.get_bulletin(s, actor, bulletin_id)
    data = pdf.kept("bulletin", bulletin, lambda: pdf.bulletin_pdf(bulletin, org))
    return pdf_response(data, f"bulletin-{bulletin_id}.pdf")


@router.get(
    "/bulletins/{bulletin_id}",
    summary="一期简报",
    response_model=BulletinOut,
    responses=responses(401, 404, 422),
)
def bulletin(
    bulletin_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> BulletinOut:
    b, org = archive.get_bulletin(s, actor, bulletin_id)
    return BulletinOut(
        id=b.id or 0,
        campaign_id=b.campaign_id,
        org=S.OrgBrief.model_validate(org),
        period=b.period,
        title=archive.bulletin_title(b),
        as_of=b.as_of,
        created_at=b.created_at,
        data=b.data or {},
        pdf_url=f"/api/v1/bulletins/{b.id}.pdf",
        page_url=f"/bulletins/{b.id}",
    )


@router.get(
    "/circulars/{circular_id}.pdf",
    summary="通报 PDF",
    response_class=Response,
    responses={200: {"content": {PDF_TYPE: {}}}, **responses(401, 404, 422)},
)
def circular_pdf(
    circular_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> Response:
    c, org, items = get_circular(s, actor, circular_id)
    data = pdf.kept("circular", c, lambda: pdf.circular_pdf(c, org, items))
    return pdf_response(data, f"circular-{circular_id}.pdf")


@router.get(
    "/circulars/{circular_id}",
    summary="一份通报",
    response_model=CircularOut,
    responses=responses(401, 404, 422),
)
def circular(
    circular_id: IdPath, actor: Actor = Depends(authenticated), s: Session = Depends(reader)
) -> CircularOut:
    c, org, items = get_circular(s, actor, circular_id)
    return circular_out(c, org, items)


def circular_out(
    c: Circular, org: Organisation, items: list[tuple[CircularItem, Organisation]]
) -> CircularOut:
    return CircularOut(
        id=c.id or 0,
        org=S.OrgBrief.model_validate(org),
        title=c.title,
        text=c.text,
        created_at=c.created_at,
        orgs=[CircularOrg(org=S.OrgBrief.model_validate(o), reason=i.reason) for i, o in items],
        pdf_url=f"/api/v1/circulars/{c.id}.pdf",
        page_url=f"/circulars/{c.id}",
    )


def pdf_response(data: bytes, name: str) -> Response:
    return Response(
        data,
        media_type=PDF_TYPE,
        headers={
            "Content-Disposition": f'inline; filename="{name}"',
            "Cache-Control": "private, no-store",
        },
    )

"""The archive of 简报 and 通报 and their printable forms.

* `/orgs/{id}/bulletins` – an organisation's archive (20 a page, newest first): its weekly 简报
  and the 通报 issued on it or on an organisation above it.
* `/bulletins/{id}/pdf` – a 简报 as a PDF (the page itself, `/bulletins/{id}`, lives with the
  notice centre in api/web/notices.py and prints with its print styles).
* `/circulars/{id}` and `/circulars/{id}/pdf` – a 通报, printable, and as a PDF.

Everything is scoped like the API: outside reach is the 404 page.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from api.deps import IdPath
from api.v1.bulletins import pdf_response
from api.web import session as web
from states.db import read_session
from states.supervision import archive, pdf
from states.supervision.service import get_circular
from states.users import Actor

router = APIRouter(include_in_schema=False)
PAGE = 20


@router.get("/orgs/{org_id}/bulletins")
def archive_page(
    org_id: IdPath,
    request: Request,
    actor: Annotated[Actor, Depends(web.page_actor)],
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> Response:
    with read_session(request.app.state.engine) as s:
        org = archive.archive_org(s, actor, org_id)
        entries, total = archive.listing(s, org, limit=PAGE, offset=(page - 1) * PAGE)
        ctx = {
            "org": org,
            "entries": entries,
            "total": total,
            "page": page,
            "pages": max(1, -(-total // PAGE)),
        }
        return web.render(request, "bulletins_archive.html", ctx)


@router.get("/bulletins/{bulletin_id}/pdf")
def bulletin_pdf(
    bulletin_id: IdPath, request: Request, actor: Annotated[Actor, Depends(web.page_actor)]
) -> Response:
    with read_session(request.app.state.engine) as s:
        bulletin, org = archive.get_bulletin(s, actor, bulletin_id)
        data = pdf.kept("bulletin", bulletin, lambda: pdf.bulletin_pdf(bulletin, org))
    return pdf_response(data, f"bulletin-{bulletin_id}.pdf")


@router.get("/circulars/{circular_id}")
def circular_page(
    circular_id: IdPath, request: Request, actor: Annotated[Actor, Depends(web.page_actor)]
) -> Response:
    with read_session(request.app.state.engine) as s:
        circular, org, items = get_circular(s, actor, circular_id)
        ctx = {"circular": circular, "org": org, "items": items}
        return web.render(request, "circular.html", ctx)


@router.get("/circulars/{circular_id}/pdf")
def circular_pdf(
    circular_id: IdPath, request: Request, actor: Annotated[Actor, Depends(web.page_actor)]
) -> Response:
    with read_session(request.app.state.engine) as s:
        circular, org, items = get_circular(s, actor, circular_id)
        data = pdf.kept("circular", circular, lambda: pdf.circular_pdf(circular, org, items))
    return pdf_response(data, f"circular-{circular_id}.pdf")

"""Attachments on the pages: each evidence item's files (thumbnails for images), an upload form
that needs no JavaScript, and downloads with the same reach as the API (out of reach: 404 page).

The run page includes `_attachments.html` after each evidence item; the template calls the
Jinja global `attachment_box(ev.id)`, which loads the files of every record on the page with
one query the first time it is called (cached on the request).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from jinja2 import pass_context
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.deps import IdPath
from api.v1.attachments import download, upload
from api.web.session import (
    CSRF_FIELD,
    CsrfFailed,
    csrf_token,
    flash,
    page_actor,
    redirect,
    safe_next,
    templates,
)
from states.attachments.service import (
    MAX_PER_RECORD,
    attachments_of,
    may_attach,
    record_in_reach,
)
from states.db import read_session
from states.errors import Conflict, InvalidInput, NotFound
from states.models import Attachment, Evidence
from states.users import Actor

router = APIRouter(include_in_schema=False)
ACCEPT = ".jpg,.jpeg,.png,.gif,.webp,.pdf,.doc,.docx,.xls,.xlsx,.ppt,.pptx"


@dataclass(frozen=True)
class FileView:
    id: int
    filename: str
    size_text: str
    thumb: bool


@dataclass
class AttachmentBox:
    evidence_id: int
    files: list[FileView] = field(default_factory=list)
    may_upload: bool = False
    full: bool = False


def size_text(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.1f} MB"
    return f"{max(1, round(size / 1024))} KB"


def _view(a: Attachment) -> FileView:
    return FileView(a.id or 0, a.filename, size_text(a.size), a.thumb_sha256 is not None)


def load_boxes(s: Session, actor: Actor | None, ids: list[int]) -> dict[int, AttachmentBox]:
    """The attachment boxes of the records `ids` the actor reaches (one query for the files)."""
    if actor is None:
        return {}
    records: list[tuple[Evidence, str]] = []
    for evidence_id in ids:
        try:
            records.append(record_in_reach(s, evidence_id, actor))
        except NotFound:
            continue
    files = attachments_of(s, [ev.id or 0 for ev, _ in records])
    boxes = {}
    for ev, path in records:
        mine = files.get(ev.id or 0, [])
        allowed = ev.status == "active" and may_attach(s, ev, path, actor)
        boxes[ev.id or 0] = AttachmentBox(
            ev.id or 0,
            [_view(a) for a in mine],
            may_upload=allowed and len(mine) < MAX_PER_RECORD,
            full=allowed and len(mine) >= MAX_PER_RECORD,
        )
    return boxes


@pass_context
def attachment_box(ctx: Any, evidence_id: int) -> AttachmentBox:
    """Jinja global: the files of one record on the page and whether the viewer may add one."""
    request: Request = ctx["request"]
    boxes = getattr(request.state, "attachment_boxes", None)
    if boxes is None or evidence_id not in boxes:
        ids = [getattr(e, "id", 0) for e in ctx.get("evidence") or []]
        ids = sorted({i for i in ids if i} | {evidence_id})
        with read_session(request.app.state.engine) as s:
            boxes = {**(boxes or {}), **load_boxes(s, ctx.get("actor"), ids)}
        request.state.attachment_boxes = boxes
    return boxes.get(evidence_id) or AttachmentBox(evidence_id)


templates.env.globals["attachment_box"] = attachment_box
templates.env.globals["attachment_accept"] = ACCEPT


def _back_of(engine: Engine, evidence_id: int) -> str:
    with read_session(engine) as s:
        ev = s.get(Evidence, evidence_id)
        run_id = ev.run_id if ev is not None else None
    return f"/runs/{run_id}#attachments-{evidence_id}" if run_id else "/"


@router.post("/evidence/{evidence_id}/attachments")
async def upload_page(
    evidence_id: IdPath, request: Request, actor: Actor = Depends(page_actor)
) -> Response:
    """The upload form (multipart: csrf_token, next, file); back to the run page with a notice."""
    sent: dict[str, str] = {}

    def check(fields: dict[str, str]) -> None:
        sent.update(fields)
        token = fields.get(CSRF_FIELD, "")
        if not hmac.compare_digest(token.encode(), csrf_token(request).encode()):
            raise CsrfFailed()

    try:
        row, created = await upload(request, evidence_id, actor, check)
    except (InvalidInput, Conflict) as exc:  # TooLarge is an InvalidInput too
        flash(request, f"附件未上传：{exc.message}", "error")
    else:
        done = "已上传附件" if created else "该材料已有同一文件"
        flash(request, f"{done}：{row.filename}")
    back = await run_in_threadpool(_back_of, request.app.state.engine, evidence_id)
    return redirect(safe_next(sent.get("next"), back))


@router.get("/files/{attachment_id}")
def download_page(
    attachment_id: IdPath, request: Request, actor: Actor = Depends(page_actor)
) -> Response:
    """Download an attachment (same reach and headers as `GET /api/v1/attachments/{id}`)."""
    return download(request, attachment_id, actor, thumb=False)


@router.get("/files/{attachment_id}/thumbnail")
def thumbnail_page(
    attachment_id: IdPath, request: Request, actor: Actor = Depends(page_actor)
) -> Response:
    """An image attachment's thumbnail (≤ 320 px) for the run page."""
    return download(request, attachment_id, actor, thumb=True)

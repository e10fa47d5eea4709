"""Files on evidence records: upload (multipart `file`), list, download, thumbnail.

The upload is read as a stream: the reach, role and count checks run before a byte of the body
is read; the multipart parsing, hashing (SHA-256) and writing to a temp file run in the thread
pool chunk by chunk; a file over 10 MB is refused (413) as soon as its part passes the limit
(and `api.app.BodyLimit` stops any body over the limit plus a little form overhead). The type is
then sniffed from the bytes (`states.attachments.sniff`), images get a thumbnail, and the file
is stored content-addressed before its row and audit event commit together.

Downloads answer with the sniffed type, `Content-Disposition: attachment` (RFC 5987 name),
`X-Content-Type-Options: nosniff`, a sandboxing CSP and a private cache header. The pages
(`api/web/attachments.py`) use the same functions.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel
from python_multipart.multipart import MultipartParser, parse_options_header
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api import schemas as S
from api.deps import IdPath, Page, page, reader
from api.errors import responses
from api.security import authenticated
from states.attachments.service import (
    MAX_BYTES,
    Received,
    Stored,
    attach,
    attachment_in_reach,
    attachments_of,
    check_may_attach,
    record_in_reach,
    store,
    too_large,
)
from states.attachments.storage import Storage, default_storage
from states.db import read_session, unit_of_work
from states.errors import InvalidInput, NotFound
from states.models import Attachment
from states.users import Actor

router = APIRouter(prefix="/api/v1", tags=["材料附件"])
#: Largest upload body: one file at the limit plus room for the form's other parts.
MAX_UPLOAD_BODY = MAX_BYTES + 64 * 1024
_BATCH = 256 * 1024  # bytes handed to the worker thread at a time
_MAX_FIELD = 4096
_MAX_PARTS = 16


class AttachmentOut(BaseModel):
    id: int
    evidence_id: int
    filename: str
    content_type: str
    size: int
    sha256: str
    url: str
    thumbnail_url: str | None
    created_at: datetime


def attachment_out(a: Attachment) -> AttachmentOut:
    base = f"/api/v1/attachments/{a.id}"
    return AttachmentOut(
        id=a.id or 0,
        evidence_id=a.evidence_id,
        filename=a.filename,
        content_type=a.content_type,
        size=a.size,
        sha256=a.sha256,
        url=base,
        thumbnail_url=f"{base}/thumbnail" if a.thumb_sha256 else None,
        created_at=a.created_at,
    )


def storage_of(request: Request) -> Storage:
    """The app's storage (`app.state.storage`, else `<data dir>/files`)."""
    return getattr(request.app.state, "storage", None) or default_storage()


# --------------------------------------------------------------------------- streamed upload


class UploadSink:
    """Multipart callbacks (run in a worker thread): the part named `file` goes to a temp file,
    hashed as written; a few small text fields (e.g. `csrf_token`) are kept."""

    def __init__(self, boundary: bytes, scratch: Path) -> None:
        self.scratch = scratch
        self.fields: dict[str, str] = {}
        self.received: Received | None = None
        self._parts = 0
        self._header = [b"", b""]
        self._disposition = b""
        self._name = ""
        self._filename: str | None = None
        self._text = bytearray()
        self._out: Any = None
        self._path: Path | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, a, b: self._grow(0, d[a:b]),
                "on_header_value": lambda d, a, b: self._grow(1, d[a:b]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": lambda d, a, b: self._data(d[a:b]),
                "on_part_end": self._end,
            },
        )

    def _grow(self, i: int, data: bytes) -> None:
        self._header[i] += data
        if len(self._header[i]) > _MAX_FIELD:
            raise _bad("表单头过长")

    def _begin(self) -> None:
        self._parts += 1
        if self._parts > _MAX_PARTS:
            raise _bad("表单字段过多")
        self._disposition, self._filename, self._text = b"", None, bytearray()

    def _header_end(self) -> None:
        if self._header[0].strip().lower() == b"content-disposition":
            self._disposition = self._header[1]
        self._header = [b"", b""]

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if self._name != "file":
            return
        if self._path is not None:
            raise _bad("一次只能上传一个文件")
        raw = options.get(b"filename", b"")
        self._filename = raw.decode("utf-8", "replace").strip() or "附件"
        fd, name = tempfile.mkstemp(dir=self.scratch, prefix="upload-")
        self._out, self._path = os.fdopen(fd, "wb"), Path(name)

    def _data(self, data: bytes) -> None:
        if self._filename is None:
            self._text += data
            if len(self._text) > _MAX_FIELD:
                raise _bad(f"字段 {self._name[:40]} 过长")
            return
        self._size += len(data)
        if self._size > MAX_BYTES:
            raise too_large(self._filename)
        self._hash.update(data)
        self._out.write(data)

    def _end(self) -> None:
        if self._filename is None:
            self.fields[self._name] = self._text.decode("utf-8", "replace")
            return
        self._out.close()
        assert self._path is not None
        self.received = Received(self._path, self._filename, self._size, self._hash.hexdigest())
        self._filename = None

    def write(self, data: bytes) -> None:
        self.parser.write(data)

    def finish(self) -> Received:
        self.parser.finalize()
        if self.received is None:
            raise InvalidInput("请选择要上传的文件（表单字段 file）", details=[{"field": "file"}])
        return self.received

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        if self._path is not None:
            self._path.unlink(missing_ok=True)


def _bad(why: str) -> InvalidInput:
    return InvalidInput(f"上传格式有误：{why}", details=[{"field": "file"}])


async def receive_upload(request: Request, scratch: Path) -> tuple[Received, dict[str, str]]:
    """Read a multipart/form-data body as a stream; return the file and the text fields."""
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInput(
            "请以 multipart/form-data 上传文件（表单字段 file）", details=[{"field": "file"}]
        )
    sink = UploadSink(boundary, scratch)
    try:
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= _BATCH:
                await run_in_threadpool(sink.write, bytes(pending))
                pending.clear()
        await run_in_threadpool(sink.write, bytes(pending))
        received = await run_in_threadpool(sink.finish)
    except BaseException:
        sink.discard()
        raise
    return received, sink.fields


async def upload(
    request: Request, evidence_id: int, actor: Actor, fields_check: Any = None
) -> tuple[Attachment, bool]:
    """Check, stream, sniff, store and record one upload; return the row and whether it is new.

    `fields_check(fields)` (the pages' CSRF check) runs once the body is read, before storing.
    """
    engine: Engine = request.app.state.engine
    await run_in_threadpool(_precheck, engine, evidence_id, actor)
    storage = storage_of(request)
    received, fields = await receive_upload(request, await run_in_threadpool(storage.scratch))
    if fields_check is not None:
        try:
            fields_check(fields)
        except BaseException:
            received.path.unlink(missing_ok=True)
            raise
    stored = await run_in_threadpool(store, storage, received)
    return await run_in_threadpool(_record, engine, evidence_id, actor, stored)


def _precheck(engine: Engine, evidence_id: int, actor: Actor) -> None:
    with read_session(engine) as s:
        check_may_attach(s, evidence_id, actor)


def _record(
    engine: Engine, evidence_id: int, actor: Actor, stored: Stored
) -> tuple[Attachment, bool]:
    with unit_of_work(engine) as s:
        return attach(s, evidence_id=evidence_id, actor=actor, stored=stored)


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


@router.post(
    "/evidence/{evidence_id}/attachments",
    summary="给材料上传附件（照片、PDF、Word、Excel）",
    status_code=201,
    response_model=AttachmentOut,
    responses={**responses(401, 403, 404, 409, 413, 422), 200: {"model": AttachmentOut}},
    openapi_extra=UPLOAD_BODY,
)
async def add_attachment(
    evidence_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> Response:
    """multipart 表单字段 `file`，每个文件不超过 10 MB，每项材料最多 20 个。类型按文件内容判断
    （JPEG、PNG、GIF、WebP、PDF、DOCX、XLSX、PPTX、DOC、XLS、PPT），与扩展名无关；其他类型返回 422
    并指出文件名，超过 10 MB 返回 413，第 21 个返回 409。同一文件再次上传到同一材料返回已有附件（200）。
    附件不是任何条件的必需项。"""
    row, created = await upload(request, evidence_id, actor)
    body = attachment_out(row).model_dump(mode="json")
    return JSONResponse(body, status_code=201 if created else 200)


@router.get(
    "/evidence/{evidence_id}/attachments",
    summary="材料的附件",
    response_model=S.Page[AttachmentOut],
    responses=responses(401, 404, 422),
)
def list_attachments(
    evidence_id: IdPath,
    actor: Actor = Depends(authenticated),
    s: Session = Depends(reader),
    p: Page = Depends(page),
) -> S.Page[AttachmentOut]:
    """按上传先后排列。"""
    record_in_reach(s, evidence_id, actor)
    items = attachments_of(s, [evidence_id]).get(evidence_id, [])
    chunk = items[p.offset : p.offset + p.limit]
    return S.Page(
        items=[attachment_out(a) for a in chunk], total=len(items), limit=p.limit, offset=p.offset
    )


# --------------------------------------------------------------------------- downloads


def _ascii_name(filename: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 and c not in '"\\;%' else "_" for c in filename)


def file_headers(filename: str, etag: str) -> dict[str, str]:
    """Headers of every download: attachment (RFC 5987 name), nosniff, private caching."""
    return {
        "Content-Disposition": (
            f"attachment; filename=\"{_ascii_name(filename)}\"; filename*=UTF-8''{quote(filename)}"
        ),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, max-age=3600",
        "ETag": f'"{etag}"',
    }


def _chunks(handle: Any) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(64 * 1024):
            yield chunk


def send_file(storage: Storage, a: Attachment, *, thumb: bool = False) -> Response:
    """Stream the stored bytes (or the thumbnail) of a checked attachment."""
    sha = a.thumb_sha256 if thumb else a.sha256
    if sha is None:
        raise NotFound("该附件没有缩略图", details={"attachment_id": a.id})
    try:
        handle = storage.open(sha)
    except FileNotFoundError:
        raise NotFound("附件文件缺失", details={"attachment_id": a.id}) from None
    if thumb:
        png = handle.read(8) == b"\x89PNG\r\n\x1a\n"
        handle.seek(0)
        media = "image/png" if png else "image/jpeg"
        name = a.filename.rpartition(".")[0] + ("-缩略图.png" if png else "-缩略图.jpg")
        headers = file_headers(name, sha)
    else:
        media, headers = a.content_type, file_headers(a.filename, sha)
        headers["Content-Length"] = str(a.size)
    return StreamingResponse(_chunks(handle), media_type=media, headers=headers)


def download(request: Request, attachment_id: int, actor: Actor, thumb: bool) -> Response:
    with read_session(request.app.state.engine) as s:  # its rollback expires the row
        return send_file(
            storage_of(request), attachment_in_reach(s, attachment_id, actor), thumb=thumb
        )


@router.get(
    "/attachments/{attachment_id}",
    summary="下载附件",
    response_class=Response,
    responses={**responses(401, 404, 422), 200: {"content": {"application/octet-stream": {}}}},
)
def get_attachment(
    attachment_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> Response:
    """以附件方式下载（Content-Disposition: attachment），类型为按内容判断的类型。"""
    return download(request, attachment_id, actor, thumb=False)


@router.get(
    "/attachments/{attachment_id}/thumbnail",
    summary="图片附件的缩略图（不超过 320 像素）",
    response_class=Response,
    responses={**responses(401, 404, 422), 200: {"content": {"image/jpeg": {}, "image/png": {}}}},
)
def get_thumbnail(
    attachment_id: IdPath, request: Request, actor: Actor = Depends(authenticated)
) -> Response:
    """只有图片附件有缩略图；其他附件返回 404。"""
    return download(request, attachment_id, actor, thumb=True)

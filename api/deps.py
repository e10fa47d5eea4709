"""Shared request plumbing: sessions, pagination, idempotent writes, body size limits."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, cast

from fastapi import Header, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from sqlalchemy.engine import Engine
from sqlmodel import Session

from api.security import Bearer
from states import idempotency
from states.db import read_session, retry_dead_connection, unit_of_work
from states.queries import MAX_PAGE
from states.users import Actor


def engine_of(request: Request) -> Engine:
    return request.app.state.engine


def reader(request: Request) -> Iterator[Session]:
    """A read-only session for one request."""
    with read_session(engine_of(request)) as s:
        yield s


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page(
    limit: int = Query(50, ge=1, le=MAX_PAGE, description=f"每页条数（最多 {MAX_PAGE}）"),
    offset: int = Query(0, ge=0, le=10_000_000, description="跳过的条数"),
) -> Page:
    return Page(limit, offset)


@dataclass(frozen=True)
class Idem:
    """The `Idempotency-Key` of a request and the fingerprint of its method, path and body."""

    key: str
    fingerprint: str


async def idempotency_key(
    request: Request,
    key: str | None = Header(
        None,
        alias="Idempotency-Key",
        max_length=idempotency.MAX_KEY,
        description="幂等键：同一键、同一请求体重放首个响应（保留 24 小时）",
    ),
) -> Idem | None:
    if key is None:
        return None
    if request.headers.get("content-type", "").startswith("multipart/"):
        form = await request.form()  # already parsed by FastAPI; hash the fields and file bytes
        parts: list[bytes] = []
        for name, value in sorted(form.multi_items(), key=lambda kv: kv[0]):
            parts.append(name.encode())
            if isinstance(value, str):
                parts.append(value.encode())
            else:
                data = await value.read()
                await value.seek(0)
                parts += [(value.filename or "").encode(), data]
        body = b"\0".join(parts)
    else:
        body = await request.body()
    return Idem(key, idempotency.request_hash(request.method, request.url.path, body))


def _json_body(value: Any) -> Any:
    """A response model as JSON-ready data: pydantic's own dump (one call in compiled code);
    anything else through FastAPI's encoder."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return jsonable_encoder(value)


def _json_response(value: Any, status: int) -> Response:
    """`value` answered as JSON. A response model is serialised by pydantic straight to the
    bytes JSONResponse would send (compact, UTF-8 unescaped), without the dict in between."""
    if isinstance(value, BaseModel):
        content = value.model_dump_json(by_alias=True).encode()
        return Response(content, status_code=status, media_type="application/json")
    return JSONResponse(jsonable_encoder(value), status_code=status)


def write(
    request: Request,
    caller: Bearer | Actor,
    idem: Idem | None,
    status: int,
    change: Callable[[Session, Actor], Any],
) -> Response:
    """Run `change` in one transaction and answer `status` with its JSON.

    A `Bearer` caller is resolved to its actor in that transaction, on its connection (a
    route's `roles(...)` dependency hands over an `Actor` it has already checked). With an
    Idempotency-Key, the key is claimed first (the actor resolved there); the response is
    recorded in the same transaction as the change, and a repeat with the same key and body
    gets the recorded response back.
    """
    engine = engine_of(request)
    known = caller if isinstance(caller, Actor) else None
    if idem is not None:
        with unit_of_work(engine) as s:
            known = known or cast(Bearer, caller).actor(s)
            replay = idempotency.claim(
                s, user_id=known.user_id, key=idem.key, fingerprint=idem.fingerprint
            )
        if replay is not None:
            return JSONResponse(
                replay.body, status_code=replay.status, headers={"Idempotent-Replayed": "true"}
            )

    def transaction() -> Response:
        with unit_of_work(engine) as s:
            actor = known or cast(Bearer, caller).actor(s)
            out = change(s, actor)
            if idem is None:
                return _json_response(out, status)
            body = _json_body(out)
            idempotency.complete(s, user_id=actor.user_id, key=idem.key, status=status, body=body)
        return JSONResponse(body, status_code=status)

    try:
        return retry_dead_connection(transaction)
    except BaseException:
        if idem is not None and known is not None:
            with unit_of_work(engine) as s:
                idempotency.release(s, user_id=known.user_id, key=idem.key)
        raise


#: Ids are 32-bit integers in the database; anything else is a 422, never a database error.
MAX_ID = 2_147_483_647
IdPath = Annotated[int, Path(ge=1, le=MAX_ID, description="编号")]

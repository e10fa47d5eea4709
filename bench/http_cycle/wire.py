"""A lean keep-alive HTTP/1.1 client for the load generator.

asyncio streams, responses parsed by httptools (the C parser uvicorn itself uses). The load
generator shares the machine's 2 cores with the server and PostgreSQL, so what it spends per
call is taken from them: `httpx.AsyncClient` spent about 0.9 ms of CPU per call here, this
client a fraction of that (BENCHMARKS.md, "The command path").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any

import httptools


class TransportError(Exception):
    """The connection failed or answered something that is not HTTP/1.1."""


@dataclass
class Response:
    status_code: int
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


@dataclass
class _Parsed:
    """httptools callbacks: collect one response's body."""

    body: list[bytes] = field(default_factory=list)
    done: bool = False

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.done = True


class Wire:
    """One keep-alive connection to `host:port`; one request at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        sock = self._writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        if self._writer is None or self._reader is None:
            await self.connect()
        assert self._writer is not None and self._reader is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method != "GET":
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        try:
            return await self._read()
        except (OSError, httptools.HttpParserError) as exc:
            await self.close()
            raise TransportError(str(exc)) from exc

    async def _read(self) -> Response:
        assert self._reader is not None
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        while not parsed.done:
            data = await self._reader.read(65536)
            if not data:
                raise TransportError("connection closed before the response ended")
            parser.feed_data(data)
        return Response(parser.get_status_code(), b"".join(parsed.body))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

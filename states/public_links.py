"""Unguessable, revocable public addresses (`/s/<token>`, `/b/<token>`): no login behind them.

A token is `<nonce>.<mac>`: the nonce is 144 random bits stored on the survey's or board's row
(revoking or closing the row ends the address); the MAC binds the nonce to its kind with the
server's secret, so a forged, truncated or borrowed token is refused before any query. The
secret is `DANGJIAN_SECRET_KEY`, else a random key kept in the data directory (created once,
mode 0600), so every server process of one installation signs alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from functools import cache
from typing import Literal

from states.config import data_dir

Kind = Literal["survey", "board", "calendar", "download"]
SECRET_ENV = "DANGJIAN_SECRET_KEY"
KEY_FILE = "secret.key"
NONCE_BYTES = 18  # 24 URL-safe characters
MAC_BYTES = 12  # 16 URL-safe characters
TOKEN_LENGTH = 24 + 1 + 16


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


@cache
def server_secret() -> bytes:
    """The installation's signing secret (see the module's docstring)."""
    configured = os.environ.get(SECRET_ENV, "").strip()
    if configured:
        return hashlib.sha256(configured.encode("utf-8")).digest()
    path = data_dir() / KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        key = secrets.token_bytes(32)
        out.write(key)
    return key


def new_nonce() -> str:
    """A fresh random nonce for a survey's or board's row."""
    return _b64(secrets.token_bytes(NONCE_BYTES))


def _mac(kind: Kind, nonce: str) -> str:
    digest = hmac.new(server_secret(), f"{kind}:{nonce}".encode(), hashlib.sha256).digest()
    return _b64(digest[:MAC_BYTES])


def token_for(kind: Kind, nonce: str) -> str:
    """The public token of a row's nonce."""
    return f"{nonce}.{_mac(kind, nonce)}"


def nonce_of(kind: Kind, token: str) -> str | None:
    """The nonce a genuine token of `kind` carries, or None for anything else."""
    if len(token) != TOKEN_LENGTH or token.count(".") != 1:
        return None
    nonce, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(kind, nonce)):
        return None
    return nonce

"""The survey's small secrets: one-time codes (kept only as keyed hashes), receipt codes, the open
link's signed device ids, and salted hashes of network addresses.

A one-time code is 8 characters from an alphabet without look-alikes (0/O, 1/I/L): about 40
bits, shown as `ABCD-EFGH`. The database keeps HMAC(server secret, survey nonce, code) only, so
the codes exist in plain text exactly once: in the opener's one reveal.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from states.public_links import server_secret

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8
RECEIPT_LENGTH = 10
DEVICE_BYTES = 12


def new_code() -> str:
    """A fresh one-time code, e.g. `7KQ2-M9XD`."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))
    return f"{raw[:4]}-{raw[4:]}"


def normalise_code(text: str) -> str | None:
    """The code a person typed (any case, dashes and spaces), or None if it cannot be one."""
    raw = "".join(ch for ch in text.upper() if ch not in "- \t")
    if len(raw) != CODE_LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return f"{raw[:4]}-{raw[4:]}"


def code_hash(nonce: str, code: str) -> str:
    """What the database keeps of a code of the survey with `nonce` (32 hex characters)."""
    digest = hmac.new(server_secret(), f"code:{nonce}:{code}".encode(), hashlib.sha256)
    return digest.hexdigest()[:32]


def new_receipt() -> str:
    """A receipt code the respondent keeps to check that the answer was counted."""
    n = secrets.randbelow(len(ALPHABET) ** RECEIPT_LENGTH)  # one draw, written in base 31
    chars = []
    for _ in range(RECEIPT_LENGTH):
        n, digit = divmod(n, len(ALPHABET))
        chars.append(ALPHABET[digit])
    return "".join(chars)


def _device_mac(device: str) -> str:
    return hmac.new(server_secret(), f"device:{device}".encode(), hashlib.sha256).hexdigest()[:16]


def new_device() -> tuple[str, str]:
    """A fresh device id and the signed cookie value that carries it."""
    device = secrets.token_urlsafe(DEVICE_BYTES)
    return device, f"{device}.{_device_mac(device)}"


def device_of(cookie: str | None) -> str | None:
    """The device id a genuine cookie carries, or None."""
    if not cookie or cookie.count(".") != 1 or len(cookie) > 64:
        return None
    device, mac = cookie.split(".")
    return device if hmac.compare_digest(mac, _device_mac(device)) else None


def new_salt() -> str:
    """A survey's salt for hashing network addresses (dropped when it closes)."""
    return secrets.token_hex(16)


def address_hash(salt: str, address: str) -> str:
    """A network address as kept for rate limiting: salted, hashed, 32 hex characters."""
    return hashlib.sha256(f"{salt}:{address}".encode()).hexdigest()[:32]

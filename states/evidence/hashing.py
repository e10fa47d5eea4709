"""The SHA-256 of a record's canonical contents.

Every audit event that creates, amends or voids a record carries this hash (`sha256`), so
`states.audit.verify` can tell a row edited behind the application's back: its contents no
longer hash to what the latest such event says.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from states.models import Evidence

#: The audit actions that carry a record's content hash.
HASHED_ACTIONS = ("evidence.recorded", "evidence.amended", "evidence.voided")


def canonical(kind: str, subject: str | None, data: Any, status: str, version: int) -> str:
    """The canonical JSON of a record's contents: sorted keys, no spaces, UTF-8 as is."""
    body = {"kind": kind, "subject": subject, "data": data, "status": status, "version": version}
    return json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":"), default=str)


def content_hash(ev: Evidence) -> str:
    """The SHA-256 (hex) of the record's canonical contents."""
    text = canonical(ev.kind, ev.subject, ev.data, ev.status, ev.version)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()

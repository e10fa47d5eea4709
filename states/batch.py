"""Batch decisions (批量审批): many requests approved or returned in one go, each on its own.

Every item goes through the single-decision services (`states.runs.approve` and
`return_request`) in its own transaction: it is checked, decided, audited and notified exactly
as one decision would be, and a refusal (not found, already decided, not the approver, a return
without an opinion, a repeated request id) is reported for that item only; the others go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from states import runs
from states.db import read_session, unit_of_work
from states.errors import DomainError, InvalidInput, NotFound
from states.models import Request
from states.users import Actor

MAX_ITEMS = 100
MAX_OPINION = 2000
Action = Literal["approve", "return"]


@dataclass(frozen=True)
class BatchItem:
    request_id: int
    action: Action
    opinion: str | None = None


@dataclass
class BatchResult:
    request_id: int
    ok: bool
    #: The request's status after the item (`pending` when forwarded to the next level); for a
    #: refused item its unchanged status, or None when it is not found.
    status: str | None
    code: str
    message: str


def decide_batch(engine: Engine, actor: Actor, items: Sequence[BatchItem]) -> list[BatchResult]:
    """Decide each item in its own transaction; one result per item, in order."""
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"一次最多审批 {MAX_ITEMS} 个申请", details=[{"field": "items"}])
    seen: set[int] = set()
    results = []
    for item in items:
        if item.request_id in seen:
            results.append(_refused(item, None, "duplicate", "同一批中重复的申请，只处理第一次"))
            continue
        seen.add(item.request_id)
        results.append(decide_one(engine, actor, item))
    return results


def decide_one(engine: Engine, actor: Actor, item: BatchItem) -> BatchResult:
    """Approve or return one request in its own transaction; never raises a domain error."""
    opinion = (item.opinion or "").strip()
    try:
        if len(opinion) > MAX_OPINION:
            raise InvalidInput(f"意见最多 {MAX_OPINION} 字", details=[{"field": "opinion"}])
        with unit_of_work(engine) as s:
            req = _decide(s, actor, item, opinion)
            status = str(req.status)
    except DomainError as exc:
        return _refused(item, _status_in_reach(engine, actor, item, exc), exc.code, exc.message)
    except OperationalError:
        return _refused(item, None, "busy", "系统繁忙，此项未处理，请稍后重试")
    return BatchResult(item.request_id, True, status, "ok", _done_message(item, status))


def _decide(s: Session, actor: Actor, item: BatchItem, opinion: str) -> Request:
    if item.action == "return":
        return runs.return_request(s, request_id=item.request_id, actor=actor, reason=opinion)
    return runs.approve(s, request_id=item.request_id, actor=actor, opinion=opinion or None)


def _done_message(item: BatchItem, status: str) -> str:
    if item.action == "return":
        return "已退回，意见已通知支部"
    return "已同意，已转上一级审批" if status == "pending" else "已同意"


def _status_in_reach(engine: Engine, actor: Actor, item: BatchItem, exc: DomainError) -> str | None:
    if isinstance(exc, NotFound):
        return None
    try:
        with read_session(engine) as s:
            return str(runs.load_request(s, item.request_id, actor).status)
    except DomainError:
        return None


def _refused(item: BatchItem, status: str | None, code: str, message: str) -> BatchResult:
    return BatchResult(item.request_id, False, status, code, message)

"""The 意见箱 of a public board: checking a message, the per-address limit, storing it and
telling the branch and its parent organisation.

Text: a message of at most 2,000 characters and an optional contact of at most 100. Bidi
overrides and isolates (which can make a message read differently from what it holds) are
refused; other control and invisible characters are dropped; pages escape what remains.

The limit counts posts per network address per hour, across every board. The address is
never stored: only an HMAC of it, keyed by the installation's secret and the day, so the
hashes of different days cannot be linked. Counting is one atomic upsert, so concurrent posts
from one address cannot pass the limit together; once over, a post is refused by a read alone.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from sqlalchemy import delete, func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from states import inbox
from states.board.models import BoardHit, BoardMessage, PublicBoard
from states.errors import InvalidInput, RateLimited
from states.models import Grant, Organisation
from states.public_links import server_secret
from states.sheets import clean_text

MAX_MESSAGE = 2000
MAX_CONTACT = 100
#: Posts one address may make in one hour (over every board).
HOURLY_LIMIT = 20
SLOT_SECONDS = 3600
NOTICE_KIND = inbox.BOARD_MESSAGE
_BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
EXCERPT = 200


@dataclass(frozen=True)
class MessageIn:
    """A checked message and contact."""

    message: str
    contact: str | None


def _clean_lines(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(clean_text(line) for line in lines).strip()


def check_message(message: str, contact: str) -> MessageIn:
    """The cleaned message and contact; InvalidInput naming each field at fault."""
    errors = []
    if _BIDI.search(message):
        errors.append({"field": "message", "message": "留言含有改变文字方向的控制字符"})
    if _BIDI.search(contact):
        errors.append({"field": "contact", "message": "联系方式含有改变文字方向的控制字符"})
    text, reach = _clean_lines(message), clean_text(contact)
    if not errors and not text:
        errors.append({"field": "message", "message": "请填写留言内容"})
    if len(text) > MAX_MESSAGE:
        errors.append({"field": "message", "message": f"留言不能超过 {MAX_MESSAGE} 字"})
    if len(reach) > MAX_CONTACT:
        errors.append({"field": "contact", "message": f"联系方式不能超过 {MAX_CONTACT} 字"})
    if errors:
        raise InvalidInput("留言有误：" + "；".join(e["message"] for e in errors), details=errors)
    return MessageIn(text, reach or None)


def address_hash(address: str, now: float | None = None) -> str:
    """The keyed hash an address is counted by (never the address itself)."""
    day = int((now if now is not None else time.time()) // 86400)
    key = server_secret()
    return hmac.new(key, f"board-addr:{day}:{address}".encode(), hashlib.sha256).hexdigest()


def count_post(session: Session, address: str, now: float | None = None) -> None:
    """Count one post from `address`; RateLimited once over the hourly limit."""
    moment = now if now is not None else time.time()
    slot = int(moment // SLOT_SECONDS)
    key = address_hash(address, moment)
    seen = session.execute(
        select(BoardHit.hits).where(BoardHit.addr_hash == key, BoardHit.slot == slot)
    ).scalar_one_or_none()
    if seen is not None and seen >= HOURLY_LIMIT:
        _refuse(slot, moment)  # already over: refused by a read, nothing written
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(BoardHit)
        .values(addr_hash=key, slot=slot, hits=1)
        .on_conflict_do_update(
            index_elements=["addr_hash", "slot"], set_={"hits": col(BoardHit.hits) + 1}
        )
        .returning(col(BoardHit.hits))
    )
    hits = int(session.execute(stmt).scalar_one())
    session.execute(delete(BoardHit).where(col(BoardHit.slot) < slot - 1))
    if hits > HOURLY_LIMIT:
        _refuse(slot, moment)


def _refuse(slot: int, moment: float) -> None:
    wait = int((slot + 1) * SLOT_SECONDS - moment) + 1
    raise RateLimited(
        f"留言过于频繁，请 {wait // 60 + 1} 分钟后再试",
        retry_after=wait,
        details={"retry_after": wait},
    )


def recipients(session: Session, org_id: int) -> list[int]:
    """The users holding a role on the branch or on its parent organisation."""
    org = session.get(Organisation, org_id)
    org_ids = [org_id] + ([org.parent_id] if org and org.parent_id else [])
    return sorted(
        {
            int(u)
            for u in session.execute(
                select(Grant.user_id).where(col(Grant.org_id).in_(org_ids))
            ).scalars()
        }
    )


def leave_message(session: Session, board: PublicBoard, checked: MessageIn) -> BoardMessage:
    """Store the message and put a notice in the branch's and its parent's inboxes."""
    row = BoardMessage(board_id=board.id or 0, message=checked.message, contact=checked.contact)
    session.add(row)
    session.flush()
    org = session.get(Organisation, board.org_id)
    excerpt = checked.message[:EXCERPT] + ("…" if len(checked.message) > EXCERPT else "")
    inbox.post(
        session,
        user_ids=recipients(session, board.org_id),
        kind=NOTICE_KIND,
        title=f"意见箱：{org.name if org else '公示栏'}收到一条群众留言",
        body=excerpt,
        run_id=board.run_id,
        org_id=board.org_id,
    )
    return row


def messages_of(
    session: Session, run_id: int, *, limit: int = 50, offset: int = 0
) -> tuple[list[BoardMessage], int]:
    """A page of the messages left on the run's boards (newest first) and their total."""
    base = (
        select(BoardMessage)
        .join(PublicBoard, col(PublicBoard.id) == col(BoardMessage.board_id))
        .where(PublicBoard.run_id == run_id)
    )
    rows = list(
        session.execute(
            base.order_by(col(BoardMessage.id).desc()).limit(limit).offset(offset)
        ).scalars()
    )
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    return rows, int(total)

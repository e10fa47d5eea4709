"""Platform sign-in: single-use states, binding a platform account to a user, and logging in.

A `state` is 32 random bytes (`secrets`), stored with its provider, purpose (`login` or `bind`)
and, for binding, the user who asked. It is consumed by one UPDATE that succeeds only if the
state is unused, younger than `STATE_TTL` and of the expected provider, so of two callbacks
carrying it (a replay, a double click) exactly one gets through. The web layer also ties it to
the browser that asked (a cookie holding the same value, `api/web/sso.py`).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from states import audit
from states.errors import Conflict, DomainError, Forbidden, NotFound
from states.models import User
from states.sso.models import SsoIdentity, SsoState
from states.sso.providers import LABELS
from states.timeutil import utcnow

STATE_TTL = timedelta(minutes=10)
#: States are deleted a day after they were made (used or not); kept that long to tell a replay.
STATE_KEEP = timedelta(days=1)
PURPOSES = ("login", "bind")


class StateRefused(DomainError):
    """The callback's state is missing, unknown, used, expired or for something else."""

    code = "sso_state"


@dataclass(frozen=True)
class Consumed:
    """A state that has just been used: what it was for and who asked."""

    provider: str
    purpose: str
    user_id: int | None


def begin(session: Session, *, provider: str, purpose: str, user_id: int | None = None) -> str:
    """A fresh state for `purpose` on `provider` (old states are cleared on the way)."""
    assert purpose in PURPOSES and provider in LABELS
    now = utcnow()
    session.execute(delete(SsoState).where(col(SsoState.created_at) < now - STATE_KEEP))
    state = secrets.token_urlsafe(32)
    row = SsoState(state=state, provider=provider, purpose=purpose, user_id=user_id)
    row.created_at = now
    session.add(row)
    session.flush()
    return state


def consume(
    session: Session, *, state: str, provider: str, purpose: str, now: datetime | None = None
) -> Consumed:
    """Use the state once; StateRefused (with the reason in Chinese) if it cannot be used."""
    now = now or utcnow()
    if not state or len(state) > 64:
        raise StateRefused("缺少有效的登录凭据（state）")
    result = session.execute(
        update(SsoState)
        .where(
            col(SsoState.state) == state,
            col(SsoState.provider) == provider,
            col(SsoState.purpose) == purpose,
            col(SsoState.used_at).is_(None),
            col(SsoState.created_at) > now - STATE_TTL,
        )
        .values(used_at=now)
    )
    row = session.get(SsoState, state)
    if not getattr(result, "rowcount", 0) or row is None:
        raise StateRefused(_why_refused(row, provider, purpose))
    return Consumed(row.provider, row.purpose, row.user_id)


def _why_refused(row: SsoState | None, provider: str, purpose: str) -> str:
    if row is None:
        return "登录凭据（state）无效，不是本系统发出的"
    if row.provider != provider:
        return "登录凭据（state）不是为这个平台发出的"
    if row.purpose != purpose:
        return "登录凭据（state）是为另一项操作（登录或绑定）发出的"
    if row.used_at is not None:
        return "这个登录链接已经用过，不能再次使用"
    return "登录凭据（state）已过期（10 分钟内有效）"


# --------------------------------------------------------------------------- identities


def identities(session: Session, user_id: int) -> dict[str, SsoIdentity]:
    """The user's bound platform accounts by provider."""
    rows = session.execute(select(SsoIdentity).where(col(SsoIdentity.user_id) == user_id))
    return {i.provider: i for i in rows.scalars()}


def bind(session: Session, *, user_id: int, provider: str, subject: str) -> bool:
    """Bind the platform account to the user; False if it was bound to her already.

    Conflict if the account is bound to someone else, or the user has another account of this
    platform bound. The database's unique keys settle a race between two binds.
    """
    label = LABELS[provider]
    mine = identities(session, user_id).get(provider)
    if mine is not None and mine.subject == subject:
        return False
    if mine is not None:
        raise Conflict(f"您已绑定另一个{label}账号，请先解除绑定，再绑定这个账号")
    if _owner(session, provider, subject) is not None:
        raise Conflict(_taken(label))
    try:
        with session.begin_nested():
            session.add(SsoIdentity(user_id=user_id, provider=provider, subject=subject))
    except IntegrityError:
        raise Conflict(_taken(label)) from None
    _audit(session, "user.sso_bound", user_id, provider, subject)
    return True


def _taken(label: str) -> str:
    return f"这个{label}账号已绑定本系统的另一个用户，不能重复绑定；如有疑问，请联系管理员"


def unbind(session: Session, *, user_id: int, provider: str) -> None:
    """Remove the user's binding on `provider`; NotFound if there is none."""
    mine = identities(session, user_id).get(provider)
    if mine is None:
        raise NotFound(f"您没有绑定{LABELS[provider]}")
    session.delete(mine)
    session.flush()
    _audit(session, "user.sso_unbound", user_id, provider, mine.subject)


def _owner(session: Session, provider: str, subject: str) -> SsoIdentity | None:
    return session.execute(
        select(SsoIdentity).where(
            col(SsoIdentity.provider) == provider, col(SsoIdentity.subject) == subject
        )
    ).scalar_one_or_none()


def _audit(session: Session, action: str, user_id: int, provider: str, subject: str) -> None:
    user = session.get(User, user_id)
    data = {"user_id": user_id, "username": user.username if user else "", "provider": provider}
    data["subject"] = subject
    audit.append(session, stream="user", action=action, actor_id=user_id, data=data)


def login_user(session: Session, *, provider: str, subject: str) -> User | None:
    """The active user bound to the platform account; None if unbound, Forbidden if inactive."""
    bound = _owner(session, provider, subject)
    if bound is None:
        return None
    user = session.get(User, bound.user_id)
    if user is None or not user.is_active:
        raise Forbidden("该账号已停用，不能登录；如有疑问，请联系管理员")
    return user

"""Log-in: password check with a rate limit, and opaque bearer tokens stored as SHA-256.

The rate limit cannot be turned on a victim. Failures count per (user name, client) and per
client, so wrong guesses from one address lock out that address only; across all clients a
user name is only *slowed* (each attempt waits `SLOW_DELAY` before its check), never locked.
Counting is atomic on both databases: an attempt's row is inserted and committed in its own
transaction *before* the password is checked, then the window is counted (`reserve_attempt`);
over a limit the attempt is refused without a check and its row removed. The password check
(`finish_login`) holds no database connection; a success removes that pair's rows.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import bindparam, delete, func, update
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from states import fastsql
from states.db import read_session, unit_of_work
from states.errors import RateLimited
from states.fastsql import Prepared
from states.models import ApiToken, Grant, LoginFailure, Organisation, Role, User
from states.timeutil import UTCDateTime, utcnow
from states.users import Actor, GrantView, check_password, hash_password

TOKEN_TTL = timedelta(hours=12)
#: Failed log-ins allowed inside WINDOW per (user name, client), and per client over all names.
MAX_FAILURES_PER_PAIR = 5
MAX_FAILURES_PER_CLIENT = 50
#: Beyond this many failures of one user name inside WINDOW (all clients together), every
#: attempt for that name waits SLOW_DELAY seconds before its password is checked.
SLOW_AFTER_PER_USER = 10
SLOW_DELAY = 2.0
WINDOW = timedelta(minutes=15)
# Compared against when the user name is unknown, so both cases take as long.
_DUMMY_HASH = hash_password("not-a-password-of-anyone")


def token_digest(token: str) -> str:
    """Return the stored form of a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    user_id: int


def issue_token(
    session: Session,
    user_id: int,
    *,
    ttl: timedelta = TOKEN_TTL,
    label: str = "api",
    now: datetime | None = None,
) -> IssuedToken:
    """Create a token for the user; only its digest is stored."""
    now = now or utcnow()
    token = secrets.token_urlsafe(32)
    expires = now + ttl
    session.add(
        ApiToken(
            token_hash=token_digest(token),
            user_id=user_id,
            label=label,
            created_at=now,
            expires_at=expires,
        )
    )
    session.flush()
    return IssuedToken(token, expires, user_id)


@cache
def _actor_query() -> Prepared:
    """Built once: a live token's user and every grant with its organisation's path."""
    return Prepared(
        sa_select(
            col(User.id),
            col(User.username),
            col(User.display_name),
            col(User.must_change_password),
            col(Grant.org_id),
            col(Organisation.path),
            col(Grant.role),
        )
        .select_from(ApiToken)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .outerjoin(Grant, col(Grant.user_id) == col(User.id))
        .outerjoin(Organisation, col(Organisation.id) == col(Grant.org_id))
        .where(
            col(ApiToken.token_hash) == bindparam("digest"),
            col(ApiToken.expires_at) > bindparam("now", type_=UTCDateTime),
            col(ApiToken.revoked_at).is_(None),
            col(User.is_active).is_(True),
        )
    )


def actor_for_token(
    db: Session | Connection, token: str, *, now: datetime | None = None
) -> Actor | None:
    """Return the Actor behind a live token, or None (unknown, expired, revoked, inactive user).

    One query (built once): the token, its user and every grant with the organisation's path.
    """
    params = {"digest": token_digest(token), "now": now or utcnow()}
    rows = fastsql.rows(db.connection() if isinstance(db, Session) else db, _actor_query(), params)
    if not rows:
        return None
    user_id, username, display_name, must_change = rows[0][:4]
    grants = [
        GrantView(int(org_id), path, Role(role))
        for _u, _n, _d, _m, org_id, path, role in rows
        if org_id is not None
    ]
    return Actor(int(user_id), username, display_name, grants, bool(must_change))


def revoke_token(session: Session, token: str, *, now: datetime | None = None) -> bool:
    """Revoke a token; return whether it was live."""
    result = session.execute(
        update(ApiToken)
        .where(col(ApiToken.token_hash) == token_digest(token), col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=now or utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def revoke_user_tokens(
    session: Session, user_id: int, *, keep: str | None = None, now: datetime | None = None
) -> int:
    """Revoke every live token of the user but `keep` (the caller's own); return how many."""
    stmt = update(ApiToken).where(
        col(ApiToken.user_id) == user_id,
        col(ApiToken.revoked_at).is_(None),
        col(ApiToken.expires_at) > (now or utcnow()),
    )
    if keep is not None:
        stmt = stmt.where(col(ApiToken.token_hash) != token_digest(keep))
    result = session.execute(stmt.values(revoked_at=now or utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)


def _retry_after(session: Session, where: list[Any], limit: int, now: datetime) -> int:
    """Seconds until the `limit`-th most recent failure leaves the window; 0 if not limited."""
    rows = session.execute(
        select(LoginFailure.at)
        .where(*where, col(LoginFailure.at) > now - WINDOW)
        .order_by(col(LoginFailure.at).desc())
        .limit(limit)
    ).all()
    if len(rows) < limit:
        return 0
    return max(1, int((rows[-1][0] + WINDOW - now).total_seconds()) + 1)


@dataclass(frozen=True)
class LoginAttempt:
    """A reserved attempt: its row id, and how long to wait before checking the password."""

    id: int
    username: str
    client: str
    delay: float


def _count(session: Session, where: list[Any], now: datetime) -> int:
    stmt = sa_select(func.count()).where(*where, col(LoginFailure.at) > now - WINDOW)
    return int(session.execute(stmt).scalar_one())


def reserve_attempt(
    engine: Engine, username: str, client: str, *, now: datetime | None = None
) -> LoginAttempt:
    """Record the attempt (committed at once), then count the window; RateLimited if over.

    Every attempt that passes has seen its own row and every row committed before it, so of
    N concurrent guesses at most the limit pass, on SQLite and PostgreSQL alike.
    """
    now = now or utcnow()
    username, client = username.strip()[:64], client[:64]
    with unit_of_work(engine) as s:
        s.execute(delete(LoginFailure).where(col(LoginFailure.at) < now - WINDOW))
        row = LoginFailure(username=username, client=client, at=now)
        s.add(row)
        s.flush()
        attempt_id = int(row.id or 0)
    pair = [col(LoginFailure.username) == username, col(LoginFailure.client) == client]
    by_client = [col(LoginFailure.client) == client]
    by_user = [col(LoginFailure.username) == username]
    with read_session(engine) as s:
        over_pair = _count(s, pair, now) > MAX_FAILURES_PER_PAIR
        over_client = _count(s, by_client, now) > MAX_FAILURES_PER_CLIENT
        slow = _count(s, by_user, now) > SLOW_AFTER_PER_USER + 1  # this attempt's row too
    if over_pair:
        _refuse(engine, attempt_id, pair, MAX_FAILURES_PER_PAIR, now)
    if over_client:
        _refuse(engine, attempt_id, by_client, MAX_FAILURES_PER_CLIENT, now)
    return LoginAttempt(attempt_id, username, client, SLOW_DELAY if slow else 0.0)


def _refuse(engine: Engine, attempt_id: int, where: list[Any], limit: int, now: datetime) -> None:
    """Remove the refused attempt's row (it was never checked) and raise RateLimited."""
    with unit_of_work(engine) as s:
        s.execute(delete(LoginFailure).where(col(LoginFailure.id) == attempt_id))
    with read_session(engine) as s:
        wait = _retry_after(s, where, limit, now) or 1
    raise RateLimited(
        f"登录失败次数过多，请 {wait} 秒后再试", retry_after=wait, details={"retry_after": wait}
    )


def finish_login(
    engine: Engine, attempt: LoginAttempt, password: str, *, label: str = "api"
) -> IssuedToken | None:
    """Check the password of a reserved attempt; on success clear the pair and issue a token.

    On failure the attempt's row stays, counted as a failure. No connection is held while
    the password is checked (bcrypt, tens of milliseconds).
    """
    with read_session(engine) as s:
        found = s.execute(
            sa_select(col(User.id), col(User.password_hash), col(User.is_active)).where(
                col(User.username) == attempt.username
            )
        ).one_or_none()
    ok = check_password(password, found[1] if found else _DUMMY_HASH)
    if found is None or not ok or not found[2]:
        return None
    with unit_of_work(engine) as s:
        s.execute(
            delete(LoginFailure).where(
                col(LoginFailure.username) == attempt.username,
                col(LoginFailure.client) == attempt.client,
            )
        )
        return issue_token(s, int(found[0]), label=label)

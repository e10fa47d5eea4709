"""Log-in: password check with a rate limit, and opaque bearer tokens stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from states.errors import RateLimited
from states.models import ApiToken, Grant, LoginFailure, Organisation, Role, User
from states.timeutil import utcnow
from states.users import Actor, GrantView, check_password, hash_password

TOKEN_TTL = timedelta(hours=12)
#: Failed log-ins allowed per user name, and per client address, inside WINDOW.
MAX_FAILURES_PER_USER = 5
MAX_FAILURES_PER_CLIENT = 20
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


def actor_for_token(session: Session, token: str, *, now: datetime | None = None) -> Actor | None:
    """Return the Actor behind a live token, or None (unknown, expired, revoked, inactive user).

    One query: the token, its user and every grant with the organisation's path.
    """
    now = now or utcnow()
    rows = session.execute(
        sa_select(
            col(User.id),
            col(User.username),
            col(User.display_name),
            col(Grant.org_id),
            col(Organisation.path),
            col(Grant.role),
        )
        .select_from(ApiToken)
        .join(User, col(User.id) == col(ApiToken.user_id))
        .outerjoin(Grant, col(Grant.user_id) == col(User.id))
        .outerjoin(Organisation, col(Organisation.id) == col(Grant.org_id))
        .where(
            col(ApiToken.token_hash) == token_digest(token),
            col(ApiToken.expires_at) > now,
            col(ApiToken.revoked_at).is_(None),
            col(User.is_active).is_(True),
        )
    ).all()
    if not rows:
        return None
    user_id, username, display_name = rows[0][0], rows[0][1], rows[0][2]
    grants = [
        GrantView(int(org_id), path, Role(role))
        for _u, _n, _d, org_id, path, role in rows
        if org_id is not None
    ]
    return Actor(int(user_id), username, display_name, grants)


def revoke_token(session: Session, token: str, *, now: datetime | None = None) -> bool:
    """Revoke a token; return whether it was live."""
    result = session.execute(
        update(ApiToken)
        .where(col(ApiToken.token_hash) == token_digest(token), col(ApiToken.revoked_at).is_(None))
        .values(revoked_at=now or utcnow())
    )
    return bool(getattr(result, "rowcount", 0))


def _retry_after(session: Session, column: str, value: str, limit: int, now: datetime) -> int:
    """Seconds until the `limit`-th most recent failure leaves the window; 0 if not limited."""
    field = getattr(LoginFailure, column)
    since = now - WINDOW
    rows = session.execute(
        select(LoginFailure.at)
        .where(field == value, col(LoginFailure.at) > since)
        .order_by(col(LoginFailure.at).desc())
        .limit(limit)
    ).all()
    if len(rows) < limit:
        return 0
    oldest = rows[-1][0]
    return max(1, int((oldest + WINDOW - now).total_seconds()) + 1)


def check_rate_limit(
    session: Session, username: str, client: str, *, now: datetime | None = None
) -> None:
    """Raise RateLimited if this user name or this client failed too often recently."""
    now = now or utcnow()
    wait = max(
        _retry_after(session, "username", username, MAX_FAILURES_PER_USER, now),
        _retry_after(session, "client", client, MAX_FAILURES_PER_CLIENT, now),
    )
    if wait:
        raise RateLimited(
            f"登录失败次数过多，请 {wait} 秒后再试", retry_after=wait, details={"retry_after": wait}
        )


def verify_login(
    session: Session, username: str, password: str, client: str, *, now: datetime | None = None
) -> User | None:
    """Return the user if the password matches; otherwise record the failure and return None.

    Raises RateLimited before checking anything once the limit is reached. The caller commits,
    so a failure is counted even though the log-in is refused.
    """
    now = now or utcnow()
    username = username.strip()[:64]
    client = client[:64]
    check_rate_limit(session, username, client, now=now)
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    ok = check_password(password, user.password_hash if user else _DUMMY_HASH)
    if user is None or not ok or not user.is_active:
        session.add(LoginFailure(username=username, client=client, at=now))
        session.execute(delete(LoginFailure).where(col(LoginFailure.at) < now - WINDOW))
        session.flush()
        return None
    session.execute(delete(LoginFailure).where(col(LoginFailure.username) == username))
    return user

"""Users, role grants and the reach they give (deny by default, scoped to the subtree)."""

from __future__ import annotations

from dataclasses import dataclass, field

import bcrypt
from sqlalchemy import ColumnElement, false, func, or_
from sqlmodel import Session, col, select

from states import audit
from states.errors import Conflict, InvalidInput, NotFound
from states.models import SUBTREE_ROLES, Grant, Organisation, Role, User
from states.orgs import get_org_by_code, is_within, subtree_filter

MIN_PASSWORD = 8
#: bcrypt cost of passwords people choose (about 80 ms a check on one core).
PASSWORD_ROUNDS = 10


def hash_password(password: str, rounds: int = PASSWORD_ROUNDS) -> str:
    """Return a bcrypt hash of `password` (cost `rounds`)."""
    return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def check_password(password: str, hashed: str) -> bool:
    """Return whether `password` matches the bcrypt `hashed`."""
    try:
        return bcrypt.checkpw(password.encode("utf-8"), hashed.encode("ascii"))
    except ValueError:
        return False


def parse_role(text: str) -> Role:
    """Return the Role for a CLI keyword or a Chinese label; raise InvalidInput otherwise."""
    from states.models import ROLE_LABELS

    key = text.strip().lower()
    for role in Role:
        if key == role.value or text.strip() == ROLE_LABELS[role]:
            return role
    allowed = ", ".join(r.value for r in Role)
    raise InvalidInput(f"未知角色：{text}（可选：{allowed}）", details={"field": "role"})


@dataclass(frozen=True)
class GrantView:
    """A grant with the organisation's path, for reach checks without further queries."""

    org_id: int
    org_path: str
    role: Role


@dataclass
class Actor:
    """Who is acting, with every grant they hold."""

    user_id: int
    username: str
    display_name: str
    grants: list[GrantView] = field(default_factory=list)
    #: An initial or reset password: the pages send this user to 修改密码 first.
    must_change_password: bool = False

    def has_role(self, role: Role) -> bool:
        return any(g.role == role for g in self.grants)

    def reaches(self, org_path: str) -> bool:
        """Return whether any grant lets this actor see the organisation at `org_path`."""
        for g in self.grants:
            if g.role in SUBTREE_ROLES:
                if is_within(org_path, g.org_path):
                    return True
            elif g.org_path == org_path:
                return True
        return False

    def holds_on(self, org_id: int, roles: frozenset[Role] | set[Role]) -> bool:
        """Return whether the actor holds one of `roles` on exactly this organisation."""
        return any(g.org_id == org_id and g.role in roles for g in self.grants)

    def holds_above(self, org_path: str, roles: frozenset[Role] | set[Role]) -> bool:
        """Return whether one of `roles` is held on a strict ancestor of `org_path`."""
        return any(
            g.role in roles and g.org_path != org_path and is_within(org_path, g.org_path)
            for g in self.grants
        )

    def holds_here_or_above(self, org_id: int, org_path: str, roles: frozenset[Role]) -> bool:
        """Return whether one of `roles` is held on this organisation or an ancestor."""
        return self.holds_on(org_id, roles) or self.holds_above(org_path, roles)

    def reach_filter(self) -> ColumnElement[bool]:
        """Return a SQL predicate on Organisation selecting every organisation in reach."""
        conds: list[ColumnElement[bool]] = []
        for g in self.grants:
            if g.role in SUBTREE_ROLES:
                conds.append(subtree_filter(g.org_path))
            else:
                conds.append(col(Organisation.id) == g.org_id)
        return or_(*conds) if conds else false()


def load_actor(session: Session, user_id: int) -> Actor:
    """Return the Actor for an active user, or raise NotFound."""
    user = session.get(User, user_id)
    if user is None or not user.is_active:
        raise NotFound("用户不存在或已停用", details={"user_id": user_id})
    rows = session.execute(
        select(Grant.org_id, Organisation.path, Grant.role)
        .join(Organisation, col(Organisation.id) == col(Grant.org_id))
        .where(Grant.user_id == user_id)
    ).all()
    grants = [GrantView(org_id, path, Role(role)) for org_id, path, role in rows]
    return Actor(user.id or 0, user.username, user.display_name, grants, user.must_change_password)


def actor_by_username(session: Session, username: str) -> Actor:
    """Return the Actor for `username`, or raise NotFound."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound(f"用户不存在：{username}", details={"username": username})
    return load_actor(session, user.id or 0)


def add_user(
    session: Session,
    *,
    username: str,
    password: str,
    display_name: str | None = None,
    email: str | None = None,
    actor_id: int | None = None,
) -> User:
    """Create a user with a hashed password; refuse a taken username or a short password."""
    username = username.strip()
    if not username:
        raise InvalidInput("用户名不能为空", details={"field": "username"})
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"密码至少 {MIN_PASSWORD} 位", details={"field": "password"})
    exists = session.execute(select(User.id).where(User.username == username)).first()
    if exists:
        raise Conflict(f"用户名已存在：{username}", details={"field": "username"})
    user = User(
        username=username,
        display_name=display_name or username,
        password_hash=hash_password(password),
        email=email,
    )
    session.add(user)
    session.flush()
    audit.append(
        session,
        stream="user",
        action="user.created",
        actor_id=actor_id,
        data={"user_id": user.id, "username": username},
    )
    return user


def grant_role(
    session: Session, *, user: User, org_code: str, role: Role, actor_id: int | None = None
) -> Grant:
    """Grant `role` on the organisation `org_code`; granting twice is a no-op."""
    org = get_org_by_code(session, org_code)
    existing = session.execute(
        select(Grant).where(Grant.user_id == user.id, Grant.org_id == org.id, Grant.role == role)
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    grant = Grant(user_id=user.id or 0, org_id=org.id or 0, role=role.value)
    session.add(grant)
    session.flush()
    audit.append(
        session,
        stream="user",
        action="grant.added",
        actor_id=actor_id,
        data={"user_id": user.id, "org": org.code, "role": role.value},
    )
    return grant


def get_user_by_username(session: Session, username: str) -> User | None:
    """Return the user with `username`, or None."""
    return session.execute(select(User).where(User.username == username)).scalar_one_or_none()


#: Roles that manage users and grants in their subtree.
MANAGE_ROLES = frozenset({Role.ORGANISER, Role.ADMIN})


def manageable_roles(actor: Actor, org: Organisation) -> list[Role]:
    """Return the roles `actor` may grant or revoke on `org` (none if she does not manage it).

    Admins here or above manage every role; organisers every role but admin, so an organiser
    can never make anyone (herself included) an admin.
    """
    if actor.holds_here_or_above(org.id or 0, org.path, frozenset({Role.ADMIN})):
        return list(Role)
    if actor.holds_here_or_above(org.id or 0, org.path, frozenset({Role.ORGANISER})):
        return [r for r in Role if r != Role.ADMIN]
    return []


@dataclass(frozen=True)
class GrantRow:
    """A grant with its user and organisation, for listings."""

    grant: Grant
    user: User
    org: Organisation


def grants_in_subtree(
    session: Session, org: Organisation, *, limit: int = 100, offset: int = 0
) -> tuple[list[GrantRow], int]:
    """Return a page of the grants on `org` and its subtree (path, then user name) and a count."""
    stmt = (
        select(Grant, User, Organisation)
        .join(User, col(User.id) == col(Grant.user_id))
        .join(Organisation, col(Organisation.id) == col(Grant.org_id))
        .where(subtree_filter(org.path))
    )
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(
        stmt.order_by(col(Organisation.path), col(User.username), col(Grant.role))
        .limit(limit)
        .offset(offset)
    ).all()
    return [GrantRow(g, u, o) for g, u, o in rows], int(total)


def revoke_grant(session: Session, *, grant: Grant, actor_id: int | None = None) -> None:
    """Delete a grant and record it in the audit log (the caller checked the right to)."""
    org = session.get(Organisation, grant.org_id)
    user = session.get(User, grant.user_id)
    data = {
        "user_id": grant.user_id,
        "username": user.username if user else None,
        "org": org.code if org else None,
        "role": grant.role,
    }
    session.delete(grant)
    session.flush()
    audit.append(session, stream="user", action="grant.revoked", actor_id=actor_id, data=data)

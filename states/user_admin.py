"""Users and grants managed from an organisation, for clients that are not the web pages.

The rules are the organisation pages' (`api/web/orgs.py`, `states.users.manageable_roles`):
admins on an organisation or above manage every role there, organisers every role but admin;
nobody revokes her own grant. Reach is the caller's: an organisation, user or grant outside it
is NotFound, exactly as one that does not exist. A user is in reach when she holds a grant on
an organisation in reach.

A user added here gets a random initial password (returned once, never stored in clear) and must
choose her own at the first log-in. Every change is audited (`user.created`, `grant.added`,
`grant.revoked`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import exists, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from states import audit
from states.accounts import USERNAME_RE, hash_initial, initial_password
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import ROLE_LABELS, Grant, Organisation, Role, User
from states.orgs import subtree_filter
from states.sheets import clean_text, formula_prefixed
from states.users import Actor, grant_role, manageable_roles, revoke_grant

MAX_NAME = 100
MAX_EMAIL = 200


def visible_org(session: Session, actor: Actor, org_id: int) -> Organisation:
    """The organisation if in reach, else NotFound."""
    org = session.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    return org


def managed_roles(actor: Actor, org: Organisation) -> list[Role]:
    """The roles `actor` may grant on `org`; Forbidden when she manages none there."""
    roles = manageable_roles(actor, org)
    if not roles:
        raise Forbidden(
            "只有本组织或上级的管理员、组织员可以管理用户和授权",
            details={"rule": "manage_users", "roles": ["admin", "organiser"]},
        )
    return roles


def _require_grantable(role: Role, roles: list[Role]) -> None:
    if role not in roles:
        raise Forbidden(
            f"您不能授予或撤销“{ROLE_LABELS[role]}”角色（只有本级或上级管理员可以）",
            details={"rule": "admin_by_admin", "field": "role"},
        )


def visible_user(session: Session, actor: Actor, user_id: int) -> User:
    """The active user if she holds a grant on an organisation in reach, else NotFound."""
    user = session.get(User, user_id)
    held = exists().where(
        col(Grant.user_id) == user_id,
        col(Grant.org_id) == col(Organisation.id),
        actor.reach_filter(),
    )
    if user is None or not user.is_active or not session.execute(select(held)).scalar():
        raise NotFound("用户不存在", details={"user_id": user_id})
    return user


# --------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class UserGrants:
    """A user and her grants on one subtree."""

    user: User
    grants: list[tuple[Grant, Organisation]]


def users_in_subtree(
    session: Session, org: Organisation, *, limit: int, offset: int
) -> tuple[list[UserGrants], int]:
    """A page of the users holding a grant on `org` or below (by user name), and the count."""
    holders = (
        select(Grant.user_id)
        .join(Organisation, col(Organisation.id) == col(Grant.org_id))
        .where(subtree_filter(org.path))
    )
    users_q = select(User).where(col(User.id).in_(holders))
    total = session.execute(select(func.count()).select_from(users_q.subquery())).scalar_one()
    users = list(
        session.execute(
            users_q.order_by(col(User.username), col(User.id)).limit(limit).offset(offset)
        ).scalars()
    )
    grants: dict[int, list[tuple[Grant, Organisation]]] = {u.id or 0: [] for u in users}
    if users:
        rows = session.execute(
            select(Grant, Organisation)
            .join(Organisation, col(Organisation.id) == col(Grant.org_id))
            .where(col(Grant.user_id).in_(list(grants)), subtree_filter(org.path))
            .order_by(col(Organisation.path), col(Grant.role))
        ).all()
        for grant, where in rows:
            grants[grant.user_id].append((grant, where))
    return [UserGrants(u, grants[u.id or 0]) for u in users], int(total)


# --------------------------------------------------------------------------- changes


@dataclass(frozen=True)
class NewUser:
    """An account made from an organisation: her first grant and initial password (shown once)."""

    user: User
    grant: Grant
    password: str


def _checked_fields(username: str, display_name: str, email: str | None) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    if not USERNAME_RE.match(username):
        errors.append(
            {
                "field": "username",
                "message": "用户名须以字母或数字开头，只含字母、数字和 . _ @ -，最长 64 位",
            }
        )
    if not display_name or len(display_name) > MAX_NAME:
        errors.append({"field": "display_name", "message": f"姓名须填写，最长 {MAX_NAME} 个字"})
    elif formula_prefixed(display_name):
        errors.append({"field": "display_name", "message": "姓名不能以 = + - @ 开头"})
    if email is not None and ("@" not in email or len(email) > MAX_EMAIL):
        errors.append({"field": "email", "message": "电子邮箱格式不正确"})
    return errors


def add_user_here(
    session: Session,
    actor: Actor,
    org: Organisation,
    *,
    username: str,
    display_name: str,
    role: Role,
    email: str | None = None,
) -> NewUser:
    """Create an account with `role` on `org` and a random initial password, or raise."""
    _require_grantable(role, managed_roles(actor, org))
    username, display_name = clean_text(username), clean_text(display_name)
    email = clean_text(email) if email else None
    errors = _checked_fields(username, display_name, email)
    if errors:
        raise InvalidInput("；".join(e["message"] for e in errors), details=errors)
    password = initial_password()
    user = User(
        username=username,
        display_name=display_name,
        password_hash=hash_initial(password),
        email=email,
        must_change_password=True,
    )
    _insert_user(session, user)
    audit.append(
        session,
        stream="user",
        action="user.created",
        actor_id=actor.user_id,
        data={"user_id": user.id, "username": username, "org": org.code},
    )
    grant = grant_role(session, user=user, org_code=org.code, role=role, actor_id=actor.user_id)
    return NewUser(user, grant, password)


def _insert_user(session: Session, user: User) -> None:
    taken = Conflict(
        f"用户名已存在：{user.username}",
        details={"rule": "username_taken", "field": "username"},
    )
    if session.execute(select(User.id).where(col(User.username) == user.username)).first():
        raise taken
    try:
        with session.begin_nested():  # the same name added at the same moment
            session.add(user)
    except IntegrityError:
        raise taken from None


def add_grant(session: Session, actor: Actor, user: User, org: Organisation, role: Role) -> Grant:
    """Grant `role` on `org` to `user`; Conflict if she already holds it."""
    _require_grantable(role, managed_roles(actor, org))
    held = session.execute(
        select(Grant.id).where(
            col(Grant.user_id) == user.id, col(Grant.org_id) == org.id, col(Grant.role) == role
        )
    ).first()
    if held:
        raise Conflict(
            f"{user.display_name}已是{org.name}的{ROLE_LABELS[role]}",
            details={"rule": "already_granted", "grant_id": held[0]},
        )
    return grant_role(session, user=user, org_code=org.code, role=role, actor_id=actor.user_id)


def revoke(session: Session, actor: Actor, grant_id: int) -> tuple[Grant, Organisation]:
    """Revoke a grant in reach that the actor manages, never her own; return what it was."""
    grant = session.get(Grant, grant_id)
    org = session.get(Organisation, grant.org_id) if grant else None
    if grant is None or org is None or not actor.reaches(org.path):
        raise NotFound("授权不存在", details={"grant_id": grant_id})
    _require_grantable(Role(grant.role), managed_roles(actor, org))
    if grant.user_id == actor.user_id:
        raise Conflict("不能撤销自己的授权，请由上级管理员办理", details={"rule": "own_grant"})
    revoke_grant(session, grant=grant, actor_id=actor.user_id)
    return grant, org

"""Factories for tests: a small organisation tree, users with grants, and evidence helpers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from states.models import Grant, Organisation, Role, User
from states.orgs import child_path
from states.users import Actor, hash_password, load_actor

# code: (name, kind, parent code, members)
TREE: dict[str, tuple[str, str, str | None, int]] = {
    "B": ("示例市卫生局党委", "党委", None, 0),
    "H1": ("第一医院党委", "党委", "B", 0),
    "G1": ("第一医院内科党总支", "党总支", "H1", 0),
    "S1": ("内科第一党支部", "党支部", "G1", 3),
    "S2": ("内科第二党支部", "党支部", "G1", 2),
    "S3": ("第一医院机关党支部", "党支部", "H1", 2),
    "H2": ("第二医院党委", "党委", "B", 0),
    "S4": ("第二医院外科党支部", "党支部", "H2", 2),
}

_HASH = hash_password("password-123")


def make_tree(
    session: Session, tree: dict[str, tuple[str, str, str | None, int]] | None = None
) -> dict[str, Organisation]:
    """Insert the tree (parents first) and return organisations by code."""
    out: dict[str, Organisation] = {}
    for code, (name, kind, parent, members) in (tree or TREE).items():
        parent_org = out.get(parent) if parent else None
        org = Organisation(
            code=code,
            name=name,
            kind=kind,
            parent_id=parent_org.id if parent_org else None,
            path=child_path(parent_org.path if parent_org else None, code),
            depth=(parent_org.depth + 1) if parent_org else 0,
            member_count=members,
        )
        session.add(org)
        session.flush()
        out[code] = org
    session.commit()
    return out


def make_user(session: Session, username: str, *grants: tuple[str, Role]) -> Actor:
    """Create a user with grants given as (org code, role) and return the Actor."""
    user = User(username=username, display_name=username, password_hash=_HASH)
    session.add(user)
    session.flush()
    for code, role in grants:
        org = session.execute(select(Organisation).where(Organisation.code == code)).scalar_one()
        session.add(Grant(user_id=user.id or 0, org_id=org.id or 0, role=role.value))
    session.commit()
    return load_actor(session, user.id or 0)


MEETING: dict[str, Any] = {"date": "2026-03-01", "title": "动员大会", "expected": 3, "present": 3}


def activity(heading: str) -> dict[str, Any]:
    return {"heading": heading, "date": "2026-04-01", "title": f"{heading}活动"}


REVIEW: dict[str, Any] = {
    "achievements": "成绩明显",
    "problems": "记录不全",
    "direction": "加强学习",
}

"""Reading the roster: who is on a branch's roll, and how many."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func
from sqlmodel import Session, col, select

from states.members.models import ACTIVE, Member


def active_members(session: Session, org_id: int) -> list[Member]:
    """The members of a branch in 在册 status, by name."""
    return list(
        session.execute(
            select(Member)
            .where(Member.org_id == org_id, Member.status == ACTIVE)
            .order_by(col(Member.name), col(Member.id))
        ).scalars()
    )


def active_counts(session: Session, org_ids: Sequence[int]) -> dict[int, int]:
    """How many 在册 members each of these branches has on its roster (absent: no roster)."""
    if not org_ids:
        return {}
    rows = session.execute(
        select(Member.org_id, func.count())
        .where(col(Member.org_id).in_(sorted(set(org_ids))), Member.status == ACTIVE)
        .group_by(col(Member.org_id))
    ).all()
    return {int(org): int(n) for org, n in rows}

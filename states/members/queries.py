"""Reading the roster: who is on a branch's roll, and how many."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, func
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from states.members.models import ACTIVE, Member
from states.models import Organisation


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


def member_count(session: Session, org: Organisation) -> int:
    """The branch's member count: its roster's 在册 members when it has a roster (any rows),
    else the number recorded on the organisation (`org.member_count`)."""
    return member_counts(session, [org]).get(org.id or 0, org.member_count)


def member_counts(session: Session, orgs: Sequence[Organisation]) -> dict[int, int]:
    """`member_count` of several organisations with two queries, by organisation id."""
    ids = sorted({o.id for o in orgs if o.id is not None})
    if not ids:
        return {}
    with_roster = set(
        session.execute(
            select(Member.org_id).where(col(Member.org_id).in_(ids)).group_by(col(Member.org_id))
        ).scalars()
    )
    active = active_counts(session, sorted(with_roster))
    return {
        o.id: active.get(o.id, 0) if o.id in with_roster else o.member_count
        for o in orgs
        if o.id is not None
    }


@dataclass(frozen=True)
class RosterFilter:
    """What a roster listing shows: a status (None: all), a 党小组 (None: all)."""

    status: str | None = None
    group_id: int | None = None


def roster_page(
    session: Session, org: Organisation, flt: RosterFilter, *, limit: int, offset: int
) -> tuple[list[Member], int]:
    """One page of a branch's roster, by name, and the total matching the filter."""
    conds = [col(Member.org_id) == org.id]
    if flt.status is not None:
        conds.append(col(Member.status) == flt.status)
    if flt.group_id is not None:
        conds.append(col(Member.group_org_id) == flt.group_id)
    total = session.execute(select(func.count()).select_from(Member).where(*conds)).scalar_one()
    items = session.execute(
        select(Member)
        .where(*conds)
        .order_by(col(Member.name), col(Member.id))
        .limit(limit)
        .offset(offset)
    ).scalars()
    return list(items), int(total)


def status_counts(session: Session, org_id: int) -> dict[str, int]:
    """How many members of the branch's roster are in each status."""
    rows = session.execute(
        select(Member.status, func.count())
        .where(Member.org_id == org_id)
        .group_by(col(Member.status))
    ).all()
    return {str(status): int(n) for status, n in rows}


def groups_of(session: Session, org: Organisation) -> list[Organisation]:
    """The 党小组 directly under a branch, by code."""
    return list(
        session.execute(
            select(Organisation)
            .where(Organisation.parent_id == org.id, Organisation.kind == "党小组")
            .order_by(col(Organisation.code))
        ).scalars()
    )


BRANCH = "党支部"
_OWN_COUNT_KINDS = (BRANCH, "党小组")


def _roster_totals() -> Any:
    """Per branch with a roster: how many rows, how many of them 在册."""
    active = func.sum(case((col(Member.status) == ACTIVE, 1), else_=0))
    return (
        select(col(Member.org_id).label("org_id"), func.count().label("n"), active.label("active"))
        .group_by(col(Member.org_id))
        .subquery()
    )


def subtree_member_counts(session: Session, orgs: Sequence[Organisation]) -> dict[int, int]:
    """Like `member_counts`, but a committee (党委, 党总支) counts the members of every branch
    below it, each branch by its roster or else its recorded number: one query for the page.
    A committee with no branch below keeps the number recorded on it."""
    counts = member_counts(session, orgs)
    committees = [o.id for o in orgs if o.id is not None and o.kind not in _OWN_COUNT_KINDS]
    if not committees:
        return counts
    anc, branch = aliased(Organisation), aliased(Organisation)
    roster = _roster_totals()
    top, below = col(anc.path), col(branch.path)
    upper = func.substr(top, 1, func.length(top) - 1) + "0"
    per_branch = case((roster.c.n.is_not(None), roster.c.active), else_=col(branch.member_count))
    rows = session.execute(
        select(col(anc.id), func.sum(per_branch))
        .join(branch, and_(below > top, below < upper, col(branch.kind) == BRANCH))
        .outerjoin(roster, roster.c.org_id == col(branch.id))
        .where(col(anc.id).in_(sorted(set(committees))))
        .group_by(col(anc.id))
    ).all()
    counts.update({int(org_id): int(total or 0) for org_id, total in rows})
    return counts

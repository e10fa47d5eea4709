"""The demo's rosters (党员名册): placeholder names such as 张某一, never real people's names."""

from __future__ import annotations

from datetime import date

from sqlalchemy import func
from sqlmodel import Session, col, select

from states.members.models import ACTIVE, Member
from states.models import Organisation

SURNAMES = "张王李赵刘陈杨黄周吴徐孙马朱胡"
ORDINALS = "一二三四五六七八九十"


def placeholder_name(index: int) -> str:
    """张某一, 王某二, …: one surname per member, an ordinal to tell them apart."""
    return f"{SURNAMES[index % len(SURNAMES)]}某{ORDINALS[index % len(ORDINALS)]}"


def build_rosters(session: Session, sizes: dict[str, int]) -> int:
    """Give each branch code in `sizes` a roster of that many members unless it has one."""
    orgs = session.execute(
        select(Organisation).where(col(Organisation.code).in_(sorted(sizes)))
    ).scalars()
    added = 0
    for org in orgs:
        if _has_roster(session, org.id or 0):
            continue
        session.add_all(_members(org, sizes[org.code]))
        added += sizes[org.code]
    session.flush()
    return added


def _has_roster(session: Session, org_id: int) -> bool:
    count = session.execute(
        select(func.count()).select_from(Member).where(Member.org_id == org_id)
    ).scalar_one()
    return bool(count)


def _members(org: Organisation, size: int) -> list[Member]:
    base = (org.id or 0) * 100
    return [
        Member(
            org_id=org.id or 0,
            name=placeholder_name(i),
            category="预备党员" if i == size - 1 and size > 3 else "正式党员",
            joined_on=date(1995 + (i * 3) % 28, 1 + i % 12, 1),
            phone=f"1380000{base + i:04d}"[-11:],
            status=ACTIVE,
        )
        for i in range(size)
    ]


def roster_ids(session: Session, org_id: int) -> list[int]:
    """The 在册 members' ids of a branch, by id."""
    return list(
        session.execute(
            select(Member.id)
            .where(Member.org_id == org_id, Member.status == ACTIVE)
            .order_by(col(Member.id))
        ).scalars()
    )

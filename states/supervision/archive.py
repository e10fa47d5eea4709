"""The archive of an organisation: its weekly 简报 and the 通报 that reach it, newest first.

Two kinds share one listing, each with its own id space and address:
`bulletin` (a stored weekly 简报 of this committee, `/bulletins/{id}`) and `circular` (a 通报
issued on this organisation or on one of its ancestors, i.e. to a subtree holding it,
`/circulars/{id}`). The listing is one `UNION ALL` ordered by time, paged in SQL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, literal, select, union_all
from sqlmodel import Session, col

from states.errors import NotFound
from states.models import Bulletin, Organisation
from states.orgs import ancestor_paths
from states.supervision.models import Circular
from states.users import Actor

KINDS = ("bulletin", "circular")
KIND_LABELS = {"bulletin": "简报", "circular": "通报"}


@dataclass(frozen=True)
class Entry:
    kind: str
    id: int
    title: str
    org_id: int
    org_name: str
    created_at: datetime

    @property
    def page(self) -> str:
        return f"/{self.kind}s/{self.id}"

    @property
    def label(self) -> str:
        return KIND_LABELS[self.kind]


def bulletin_title(bulletin: Bulletin) -> str:
    data = bulletin.data or {}
    return f"{data.get('campaign', '')}简报 · {data.get('period', bulletin.period)}"


def archive_org(session: Session, actor: Actor, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    return org


def listing(
    session: Session, org: Organisation, *, limit: int, offset: int
) -> tuple[list[Entry], int]:
    """One page of the organisation's archive, newest first, and the total."""
    above = ancestor_paths(org.path, include_self=True)
    circ_orgs = select(col(Organisation.id)).where(col(Organisation.path).in_(above))
    both = union_all(
        select(
            literal("bulletin").label("kind"),
            col(Bulletin.id).label("id"),
            col(Bulletin.org_id).label("org_id"),
            col(Bulletin.created_at).label("at"),
        ).where(col(Bulletin.org_id) == org.id),
        select(
            literal("circular").label("kind"),
            col(Circular.id).label("id"),
            col(Circular.org_id).label("org_id"),
            col(Circular.created_at).label("at"),
        ).where(col(Circular.org_id).in_(circ_orgs)),
    ).subquery()
    total = session.execute(select(func.count()).select_from(both)).scalar_one()
    keys = session.execute(
        select(both.c.kind, both.c.id)
        .order_by(both.c.at.desc(), both.c.kind, both.c.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    return _entries(session, [(str(k), int(i)) for k, i in keys]), total


def _entries(session: Session, keys: list[tuple[str, int]]) -> list[Entry]:
    b_ids = [i for k, i in keys if k == "bulletin"]
    c_ids = [i for k, i in keys if k == "circular"]
    found: dict[tuple[str, int], Entry] = {}
    if b_ids:
        for b, name in session.execute(
            select(Bulletin, col(Organisation.name))
            .join(Organisation, col(Organisation.id) == col(Bulletin.org_id))
            .where(col(Bulletin.id).in_(b_ids))
        ).all():
            entry = Entry("bulletin", b.id or 0, bulletin_title(b), b.org_id, name, b.created_at)
            found[("bulletin", b.id or 0)] = entry
    if c_ids:
        for c, name in session.execute(
            select(Circular, col(Organisation.name))
            .join(Organisation, col(Organisation.id) == col(Circular.org_id))
            .where(col(Circular.id).in_(c_ids))
        ).all():
            found[("circular", c.id or 0)] = Entry(
                "circular", c.id or 0, c.title, c.org_id, name, c.created_at
            )
    return [found[k] for k in keys if k in found]


def get_bulletin(session: Session, actor: Actor, bulletin_id: int) -> tuple[Bulletin, Organisation]:
    """A stored 简报 of a committee within reach (others look missing)."""
    bulletin = session.get(Bulletin, bulletin_id)
    org = session.get(Organisation, bulletin.org_id) if bulletin else None
    if bulletin is None or org is None or not actor.reaches(org.path):
        raise NotFound("简报不存在", details={"bulletin_id": bulletin_id})
    return bulletin, org

"""Stock opinions (常用意见): short texts a committee keeps for approving or returning requests.

A committee (党委/党总支) keeps its own list; a committee member or admin of that organisation
(or an admin above it) adds and removes them, and every member of the committee may use them.
An organisation out of reach is "not found", like everything else. Each change is audited on
the `org` stream in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from states import audit
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import Organisation, Role, StockOpinion
from states.sheets import clean_text
from states.users import Actor

MAX_TEXT = 200
#: At most this many stock opinions per committee (a list one can still read on a phone).
MAX_PER_ORG = 50
_MANAGERS = frozenset({Role.COMMITTEE, Role.ADMIN})


@dataclass(frozen=True)
class OpinionView:
    id: int
    org_id: int
    org_name: str
    text: str


def committees_of(session: Session, actor: Actor) -> list[Organisation]:
    """The organisations whose stock opinions the actor uses: where they are committee or admin."""
    ids = sorted({g.org_id for g in actor.grants if g.role in _MANAGERS})
    if not ids:
        return []
    rows = session.execute(
        select(Organisation).where(col(Organisation.id).in_(ids)).order_by(col(Organisation.path))
    ).scalars()
    return list(rows)


def list_for(session: Session, actor: Actor) -> list[OpinionView]:
    """Every stock opinion of the actor's committees, by committee then oldest first."""
    orgs = {o.id: o for o in committees_of(session, actor)}
    if not orgs:
        return []
    rows = session.execute(
        select(StockOpinion)
        .where(col(StockOpinion.org_id).in_(list(orgs)))
        .order_by(col(StockOpinion.org_id), col(StockOpinion.id))
    ).scalars()
    return [OpinionView(r.id or 0, r.org_id, orgs[r.org_id].name, r.text) for r in rows]


def texts_for(session: Session, actor: Actor) -> dict[int, str]:
    """Stock opinion id -> text, for the ids the actor may use."""
    return {v.id: v.text for v in list_for(session, actor)}


def _managed_org(session: Session, actor: Actor, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    here = actor.holds_on(org.id or 0, _MANAGERS)
    if not here and not actor.holds_above(org.path, frozenset({Role.ADMIN})):
        raise Forbidden(
            f"只有「{org.name}」的委员或管理员可以维护其常用意见",
            details={"rule": "not_committee"},
        )
    return org


def add(session: Session, *, actor: Actor, org_id: int, text: str) -> OpinionView:
    """Add a stock opinion to a committee: 422 empty or too long, 409 repeated or list full."""
    text = clean_text(text or "")
    if not text:
        raise InvalidInput("请填写常用意见", details=[{"field": "text"}])
    if len(text) > MAX_TEXT:
        raise InvalidInput(f"常用意见最多 {MAX_TEXT} 字", details=[{"field": "text"}])
    org = _managed_org(session, actor, org_id)
    if _exists(session, org.id or 0, text):
        raise Conflict("已有相同的常用意见", details={"rule": "duplicate_opinion"})
    count = session.execute(
        select(func.count()).select_from(StockOpinion).where(StockOpinion.org_id == org.id)
    ).scalar_one()
    if count >= MAX_PER_ORG:
        raise Conflict(
            f"每个组织最多保存 {MAX_PER_ORG} 条常用意见，请先删除不用的",
            details={"rule": "too_many_opinions"},
        )
    row = StockOpinion(org_id=org.id or 0, text=text, created_by=actor.user_id)
    try:
        with session.begin_nested():  # two people adding the same text at once: one wins
            session.add(row)
            session.flush()
    except IntegrityError:
        raise Conflict("已有相同的常用意见", details={"rule": "duplicate_opinion"}) from None
    _log(session, actor, "opinion.added", org, row)
    return OpinionView(row.id or 0, org.id or 0, org.name, text)


def _exists(session: Session, org_id: int, text: str) -> bool:
    same = select(StockOpinion.id).where(StockOpinion.org_id == org_id, StockOpinion.text == text)
    return session.execute(same).first() is not None


def remove(session: Session, *, actor: Actor, opinion_id: int) -> StockOpinion:
    """Remove a stock opinion; one of an organisation out of reach is not found."""
    row = session.get(StockOpinion, opinion_id)
    if row is None:
        raise NotFound("常用意见不存在", details={"opinion_id": opinion_id})
    try:
        org = _managed_org(session, actor, row.org_id)
    except NotFound:
        raise NotFound("常用意见不存在", details={"opinion_id": opinion_id}) from None
    _log(session, actor, "opinion.removed", org, row)
    session.delete(row)
    session.flush()
    return row


def _log(session: Session, actor: Actor, action: str, org: Organisation, row: StockOpinion) -> None:
    audit.append(
        session,
        stream="org",
        action=action,
        actor_id=actor.user_id,
        data={"org": org.code, "opinion_id": row.id, "text": row.text},
    )

"""Read models for the API and the pages: lists scoped to the caller's reach, set-based."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_
from sqlmodel import Session, col, select

from states.catalog import DONE
from states.errors import NotFound
from states.models import (
    SUBTREE_ROLES,
    Campaign,
    Evidence,
    EvidenceLink,
    Organisation,
    Request,
    RequestStatus,
    Role,
    Run,
)
from states.orgs import ancestor_paths, is_within, subtree_filter
from states.timeutil import utcnow
from states.users import Actor

MAX_PAGE = 200

#: Roles that see a campaign's progress (committees, organisers, supervisors, admins).
VIEW_ROLES = SUBTREE_ROLES


def campaign_scope(actor: Actor, root: Organisation) -> list[str]:
    """Return the subtree paths of `root`'s campaign the actor sees; empty if none.

    A committee above the root sees the whole campaign; one inside it sees its own subtree.
    """
    paths: set[str] = set()
    for g in actor.grants:
        if g.role not in VIEW_ROLES:
            continue
        if is_within(root.path, g.org_path):
            return [root.path]
        if is_within(g.org_path, root.path):
            paths.add(g.org_path)
    # Drop paths inside other paths of the set.
    return sorted(p for p in paths if not any(q != p and is_within(p, q) for q in paths))


def visible_campaign(
    session: Session, campaign_id: int, actor: Actor
) -> tuple[Campaign, Organisation, list[str]]:
    """Return the campaign, its root and the actor's scope in it; NotFound if none."""
    campaign = session.get(Campaign, campaign_id)
    root = session.get(Organisation, campaign.root_org_id) if campaign else None
    scope = campaign_scope(actor, root) if root else []
    if campaign is None or root is None or not scope:
        raise NotFound("活动不存在", details={"campaign_id": campaign_id})
    return campaign, root, scope


def _scope_filter(scope: Sequence[str], column: Any = None) -> ColumnElement[bool]:
    return or_(*(subtree_filter(p, column=column) for p in scope)) if scope else false()


def campaigns_for(
    session: Session, actor: Actor, *, limit: int = 50, offset: int = 0
) -> tuple[list[tuple[Campaign, Organisation]], int]:
    """Return the campaigns whose subtree meets the actor's, newest first, and their count."""
    views = [g for g in actor.grants if g.role in VIEW_ROLES]
    conds: list[ColumnElement[bool]] = [subtree_filter(g.org_path) for g in views]
    # Campaigns launched above one of the actor's organisations: their root is an ancestor.
    ancestors = {p for g in views for p in ancestor_paths(g.org_path)}
    if ancestors:
        conds.append(col(Organisation.path).in_(sorted(ancestors)))
    where = or_(*conds) if conds else false()
    stmt = (
        select(Campaign, Organisation)
        .join(Organisation, col(Organisation.id) == col(Campaign.root_org_id))
        .where(where)
    )
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(stmt.order_by(col(Campaign.id).desc()).limit(limit).offset(offset)).all()
    return [(c, o) for c, o in rows], int(total)


def campaign_runs(
    session: Session,
    campaign: Campaign,
    scope: Sequence[str],
    *,
    stage: str | None = None,
    overdue: bool | None = None,
    within: Organisation | None = None,
    now: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
    most_overdue_first: bool = False,
) -> tuple[list[tuple[Run, Organisation]], int]:
    """Return a page of a campaign's runs in scope (optionally one stage, overdue, a subtree),
    by organisation path, or by deadline (most overdue first) if asked."""
    now = now or utcnow()
    stmt = (
        select(Run, Organisation)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(Run.campaign_id == campaign.id, _scope_filter(scope))
    )
    if stage is not None:
        stmt = stmt.where(Run.stage == stage)
    if overdue is True:
        stmt = stmt.where(col(Run.deadline) < now, col(Run.completed_at).is_(None))
    elif overdue is False:
        stmt = stmt.where(or_(col(Run.deadline).is_(None), col(Run.deadline) >= now))
    if within is not None:
        stmt = stmt.where(subtree_filter(within.path))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    order = (col(Run.deadline),) if most_overdue_first else ()
    rows = session.execute(
        stmt.order_by(*order, col(Organisation.path)).limit(limit).offset(offset)
    ).all()
    return [(r, o) for r, o in rows], int(total)


@dataclass(frozen=True)
class InboxRow:
    request: Request
    run: Run
    org: Organisation
    campaign: Campaign


def approval_inbox(
    session: Session,
    actor: Actor,
    *,
    status: str = RequestStatus.PENDING,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[InboxRow], int]:
    """Return requests waiting on (or decided at) an organisation where the actor approves.

    Approvers are committee members or admins of the approver organisation, and admins above
    it. The actor's own requests and her own branch's requests never appear: she may not decide
    them.
    """
    approver = Organisation.__table__.alias("approver")  # type: ignore[attr-defined]
    direct = [g.org_id for g in actor.grants if g.role in (Role.COMMITTEE, Role.ADMIN)]
    conds: list[ColumnElement[bool]] = []
    if direct:
        conds.append(col(Request.current_approver_org_id).in_(direct))
    for g in actor.grants:
        if g.role == Role.ADMIN:
            conds.append(subtree_filter(g.org_path, include_self=False, column=approver.c.path))
    own_branches = [g.org_id for g in actor.grants if g.role == Role.SECRETARY]
    stmt: Any = (
        select(Request, Run, Organisation, Campaign)
        .join(Run, col(Run.id) == col(Request.run_id))
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(approver, approver.c.id == col(Request.current_approver_org_id))
        .where(
            Request.status == status,
            or_(*conds) if conds else false(),
            col(Request.requested_by) != actor.user_id,
        )
    )
    if own_branches:
        stmt = stmt.where(col(Run.org_id).not_in(own_branches))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    order = col(Request.submitted_at) if status == RequestStatus.PENDING else col(Request.id).desc()
    rows = session.execute(stmt.order_by(order).limit(limit).offset(offset)).all()
    return [InboxRow(*r) for r in rows], int(total)


def evidence_of(
    session: Session, run_id: int, *, stage: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Evidence], int]:
    """Return a page of the records linked to a run, newest first (the caller checked reach)."""
    linked = select(EvidenceLink.evidence_id).where(EvidenceLink.run_id == run_id)
    if stage is not None:
        linked = linked.where(EvidenceLink.stage == stage)
    stmt = select(Evidence).where(col(Evidence.id).in_(linked))
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(
        stmt.order_by(col(Evidence.id).desc()).limit(limit).offset(offset)
    ).scalars()
    return list(rows), int(total)


def org_page(
    session: Session,
    where: ColumnElement[bool],
    *,
    kind: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[Organisation], int]:
    """Return a page of organisations matching `where`, in path order."""
    stmt = select(Organisation).where(where)
    if kind is not None:
        stmt = stmt.where(Organisation.kind == kind)
    total = session.execute(select(func.count()).select_from(stmt.subquery())).scalar_one()
    rows = session.execute(
        stmt.order_by(col(Organisation.path)).limit(limit).offset(offset)
    ).scalars()
    return list(rows), int(total)


def narrow_scope(scope: Sequence[str], path: str) -> list[str]:
    """Return the part of a campaign scope inside the subtree at `path` (scope ∩ subtree)."""
    if any(is_within(path, p) for p in scope):
        return [path]
    return [p for p in scope if is_within(p, path)]


@dataclass(frozen=True)
class ChildProgress:
    """One child organisation's runs in a campaign: counts per stage, total and done."""

    org: Organisation
    stages: dict[str, int]
    total: int
    done: int

    @property
    def percent_done(self) -> float:
        return round(100.0 * self.done / self.total, 1) if self.total else 0.0


def progress_by_child(
    session: Session, campaign: Campaign, scope: Sequence[str], parent: Organisation
) -> list[ChildProgress]:
    """Return, per direct child of `parent`, the campaign's runs in scope under it, by stage.

    One grouped query: each child's subtree is a range of paths (as in `subtree_filter`, the
    upper bound is the path with its final '/' replaced by '0'), so the join walks the path index
    once per child. Children with no run in scope are left out; order is by child path.
    """
    child = Organisation.__table__.alias("child")  # type: ignore[attr-defined]
    unit = Organisation.__table__.alias("unit")  # type: ignore[attr-defined]
    upper = func.substr(child.c.path, 1, func.length(child.c.path) - 1).concat("0")
    rows = session.execute(
        select(child.c.id, Run.stage, func.count())
        .select_from(Run)
        .join(unit, unit.c.id == col(Run.org_id))
        .join(
            child,
            and_(
                child.c.parent_id == parent.id,
                unit.c.path >= child.c.path,
                unit.c.path < upper,
            ),
        )
        .where(
            Run.campaign_id == campaign.id,
            _scope_filter(scope, unit.c.path),
            subtree_filter(parent.path, include_self=False, column=unit.c.path),
        )
        .group_by(child.c.id, Run.stage)
    ).all()
    counts: dict[int, dict[str, int]] = {}
    for child_id, stage, n in rows:
        counts.setdefault(int(child_id), {})[stage] = int(n)
    if not counts:
        return []
    orgs = session.execute(
        select(Organisation)
        .where(col(Organisation.id).in_(sorted(counts)))
        .order_by(col(Organisation.path))
    ).scalars()
    return [
        ChildProgress(
            org=o,
            stages=counts[o.id or 0],
            total=sum(counts[o.id or 0].values()),
            done=counts[o.id or 0].get(DONE, 0),
        )
        for o in orgs
    ]

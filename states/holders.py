"""Who holds the ball for each run, overdue counts by holder, and the work a committee owes.

A run is held by exactly one of: the branch (支部办理中); the approver its pending request waits
at (待 X 审批 · 已 N 个工作日, counted on the working-day calendar from when the request reached
that step); or the superior owing its current stage (待上级点评 / 待上级定级 …, see
`states.owners`). Every read here is one statement for a page or a whole campaign.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, false, func, literal, or_
from sqlmodel import Session, col, select

from states.campaigns import template_by_digest
from states.catalog import DONE, Template, from_definition
from states.glossary import HOLDER_ABOVE, HOLDER_APPROVER, HOLDER_BRANCH, OVERDUE_BY_HOLDER
from states.models import Campaign, Decision, Organisation, Request, Run, TemplateVersion
from states.orgs import subtree_filter
from states.owners import open_above, owed_by, owned_stages, word
from states.timeutil import local_date
from states.users import Actor
from states.workcal import WorkCalendar

BRANCH = "branch"
APPROVER = "approver"
ABOVE = "above"
DONE_HOLDER = "done"


@dataclass(frozen=True)
class Holder:
    """Who holds a run now, and (at an approver) since when, in working days."""

    kind: str  # branch | approver | above | done
    label: str
    org_name: str | None = None
    since: datetime | None = None
    working_days: int | None = None


def waiting_since() -> Any:
    """SQL: when the pending request reached its current step (its last decision, or submission)."""
    last = (
        select(func.max(col(Decision.created_at)))
        .where(col(Decision.request_id) == col(Request.id))
        .correlate(Request)
        .scalar_subquery()
    )
    return func.coalesce(last, col(Request.submitted_at))


def holder_kind(owed: dict[int, tuple[str, ...]]) -> Any:
    """SQL: 'done', 'approver', 'above' or 'branch' for each run."""
    return case(
        (col(Run.stage) == DONE, literal(DONE_HOLDER)),
        (col(Run.pending_request_id).is_not(None), literal(APPROVER)),
        (open_above(owed) if owed else false(), literal(ABOVE)),
        else_=literal(BRANCH),
    )


def holders(
    session: Session,
    runs: Sequence[Run],
    templates: dict[int, Template],
    cal: WorkCalendar,
    now: datetime,
) -> dict[int, Holder]:
    """{run id: Holder} for a page of runs (`templates` by campaign id), in one query."""
    ids = [r.id for r in runs if r.id is not None]
    if not ids:
        return {}
    owed = owned_stages(templates)
    approver = Organisation.__table__.alias("approver")  # type: ignore[attr-defined]
    rows = session.execute(
        select(col(Run.id), holder_kind(owed), approver.c.name, waiting_since())
        .outerjoin(Request, col(Request.id) == col(Run.pending_request_id))
        .outerjoin(approver, approver.c.id == col(Request.current_approver_org_id))
        .where(col(Run.id).in_(ids))
    ).all()
    by_id = {r.id: r for r in runs}
    out = {}
    for run_id, kind, approver_name, since in rows:
        run = by_id[run_id]
        out[run_id] = _holder(kind, templates[run.campaign_id], run, approver_name, since, cal, now)
    return out


def _holder(
    kind: str,
    tpl: Template,
    run: Run,
    approver_name: str | None,
    since: datetime | None,
    cal: WorkCalendar,
    now: datetime,
) -> Holder:
    if kind == DONE_HOLDER:
        return Holder(DONE_HOLDER, "已完成")
    if kind == ABOVE:
        return Holder(ABOVE, HOLDER_ABOVE.format(word=word(tpl, run.stage)))
    if kind == APPROVER and since is not None:
        days = max(0, cal.working_days_between(local_date(since), local_date(now)))
        name = approver_name or "上级"
        label = HOLDER_APPROVER.format(approver=name) + f" · 已 {days} 个工作日"
        return Holder(APPROVER, label, name, since, days)
    return Holder(BRANCH, HOLDER_BRANCH)


def overdue_by_holder(
    session: Session, campaign: Campaign, tpl: Template, scope: Sequence[str] | None, now: datetime
) -> dict[str, int]:
    """Overdue runs of a campaign (in `scope`) by holder: branch, approver, above (one query)."""
    owed = owned_stages({campaign.id or 0: tpl})
    kind = holder_kind(owed)
    stmt = (
        select(kind, func.count())
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(
            col(Run.campaign_id) == campaign.id,
            col(Run.deadline) < now,
            col(Run.stage) != DONE,
        )
        .group_by(kind)
    )
    if scope is not None:
        stmt = stmt.where(or_(*[subtree_filter(p) for p in scope]) if scope else false())
    counts = {k: int(n) for k, n in session.execute(stmt).all()}
    return {k: counts.get(k, 0) for k in (BRANCH, APPROVER, ABOVE)}


#: {holder: 支部逾期 / 审批逾期 / 上级逾期}.
OVERDUE_LABELS = OVERDUE_BY_HOLDER


@dataclass(frozen=True)
class OwedRow:
    run: Run
    org: Organisation
    campaign: Campaign
    stage_name: str
    word: str


@dataclass(frozen=True)
class OwedGroup:
    """ "待点评 12 个支部": one (campaign, stage) the actor's organisations owe, with its count."""

    campaign_id: int
    campaign_name: str
    stage: str
    stage_name: str
    word: str
    count: int

    @property
    def label(self) -> str:
        return f"待{self.word} {self.count} 个支部"


def _active(session: Session) -> tuple[dict[int, Template], dict[int, str]]:
    """Templates and root paths of the active campaigns that owe some stage above the branch."""
    rows = session.execute(
        select(col(Campaign.id), col(TemplateVersion.definition), col(Organisation.path))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .join(Organisation, col(Organisation.id) == col(Campaign.root_org_id))
        .where(col(Campaign.status) == "active")
    ).all()
    templates = {cid: from_definition(d) for cid, d, _p in rows}
    owing = owned_stages(templates)
    return (
        {cid: t for cid, t in templates.items() if cid in owing},
        {cid: p for cid, _d, p in rows if cid in owing},
    )


def owed_filter(session: Session, actor: Actor) -> tuple[Any, dict[int, Template]]:
    """SQL on Run joined to its Organisation: runs waiting on work the actor's organisations owe."""
    templates, roots = _active(session)
    grants = [(g.org_id, g.org_path, g.role) for g in actor.grants]
    where = owed_by(templates, roots, grants)
    return (where & open_above(owned_stages(templates))) if templates else false(), templates


def owed_to(
    session: Session, actor: Actor, *, limit: int = 50, offset: int = 0
) -> tuple[list[OwedRow], list[OwedGroup], int]:
    """The runs waiting on the actor's organisations (oldest first), the counts per stage, and
    the total; scoped by construction to runs below the organisations the actor holds."""
    where, templates = owed_filter(session, actor)
    if not templates:
        return [], [], 0
    base = (
        select(Run, Organisation, Campaign, TemplateVersion.digest)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(where)
    )
    grouped = session.execute(
        select(col(Run.campaign_id), col(Run.stage), func.count())
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(where)
        .group_by(col(Run.campaign_id), col(Run.stage))
    ).all()
    rows = session.execute(
        base.order_by(col(Run.entered_at), col(Run.id)).limit(limit).offset(offset)
    ).all()
    out = []
    for run, org, campaign, digest in rows:
        tpl = template_by_digest(session, campaign.template_version_id, digest)
        out.append(OwedRow(run, org, campaign, tpl.stage_name(run.stage), word(tpl, run.stage)))
    names = _campaign_names(session, [cid for cid, _s, _n in grouped])
    groups = [
        OwedGroup(
            cid,
            names.get(cid, ""),
            stage,
            templates[cid].stage_name(stage),
            word(templates[cid], stage),
            int(n),
        )
        for cid, stage, n in sorted(grouped)
    ]
    return out, groups, sum(g.count for g in groups)


def _campaign_names(session: Session, ids: list[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = session.execute(
        select(col(Campaign.id), col(Campaign.name)).where(col(Campaign.id).in_(sorted(ids)))
    ).all()
    return {int(i): n for i, n in rows}

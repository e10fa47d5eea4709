"""Build response bodies from rows, batching the look-ups a page needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import literal, union_all
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select

from api import schemas as S
from states.catalog import DONE, Template
from states.fastsql import Prepared, in_ids, rows
from states.models import Campaign, Decision, Organisation, Request, Run, User
from states.runs import STATUS_LABELS
from states.timeutil import local_date, utcnow


def org_brief(org: Organisation) -> S.OrgBrief:
    return S.OrgBrief(id=org.id or 0, code=org.code, name=org.name, kind=org.kind)


def org_out(org: Organisation, member_count: int | None = None) -> S.OrgOut:
    """The organisation; `member_count` from its roster when given (`states.members.queries`)."""
    out = S.OrgOut.model_validate(org)
    return out if member_count is None else out.model_copy(update={"member_count": member_count})


def run_brief(
    run: Run, org: Organisation, tpl: Template, now: datetime | None = None
) -> S.RunBrief:
    now = now or utcnow()
    deadline = run.deadline
    overdue = bool(deadline is not None and run.completed_at is None and deadline < now)
    days_left = (
        (local_date(deadline) - local_date(now)).days
        if deadline is not None and run.completed_at is None
        else None
    )
    return S.RunBrief(
        id=run.id or 0,
        campaign_id=run.campaign_id,
        org=org_brief(org),
        stage=run.stage,
        stage_name=tpl.stage_name(run.stage),
        entered_at=run.entered_at,
        deadline=deadline,
        overdue=overdue,
        days_left=days_left,
        pending_request_id=run.pending_request_id,
        escalation_level=run.escalation_level,
        completed_at=run.completed_at,
    )


def campaign_brief(campaign: Campaign, root: Organisation) -> S.CampaignBrief:
    return S.CampaignBrief(
        id=campaign.id or 0,
        name=campaign.name,
        template=campaign.template_key,
        root=org_brief(root),
        run_count=campaign.run_count,
        launched_at=campaign.launched_at,
    )


def timeline(tpl: Template, stage: str) -> list[S.StepOut]:
    ids = [*tpl.stage_ids, DONE]
    here = ids.index(stage) if stage in ids else 0
    steps = []
    for i, sid in enumerate(ids):
        status = "done" if i < here or stage == DONE else ("current" if i == here else "todo")
        steps.append(S.StepOut(id=sid, name=tpl.stage_name(sid), status=status))
    return steps


def users_by_id(session: Session, ids: set[int]) -> dict[int, S.UserBrief]:
    if not ids:
        return {}
    rows = session.execute(
        select(User.id, User.display_name).where(col(User.id).in_(sorted(ids)))
    ).all()
    return {int(i): S.UserBrief(id=int(i), display_name=n) for i, n in rows}


_D = Decision.__table__  # type: ignore[attr-defined]
_U = User.__table__  # type: ignore[attr-defined]
_O = Organisation.__table__  # type: ignore[attr-defined]


@cache
def _decisions_query() -> Prepared:
    """Built once: the decisions on some requests, each with its decider's name."""
    return Prepared(None, _decisions_for)


def _decisions_for(dialect: str) -> Any:
    return (
        sa_select(
            _D.c.request_id,
            _D.c.step,
            _D.c.org_id,
            _D.c.decided_by,
            _U.c.display_name,
            _D.c.outcome,
            _D.c.opinion,
            _D.c.created_at,
        )
        .select_from(_D.outerjoin(_U, _U.c.id == _D.c.decided_by))
        .where(in_ids(_D.c.request_id, "ids", dialect))
        .order_by(_D.c.request_id, _D.c.step)
    )


@cache
def _names_query() -> Prepared:
    """Built once: organisations (`o`) and users (`u`) by id, in one statement."""
    return Prepared(None, _names_for)


def _names_for(dialect: str) -> Any:
    orgs = sa_select(literal("o").label("k"), _O.c.id, _O.c.code, _O.c.name, _O.c.kind).where(
        in_ids(_O.c.id, "org_ids", dialect)
    )
    users = sa_select(literal("u"), _U.c.id, literal(""), _U.c.display_name, literal("")).where(
        in_ids(_U.c.id, "user_ids", dialect)
    )
    return union_all(orgs, users)


def _decision_out(row: Any, unknown: S.UserBrief) -> S.DecisionOut:
    _rid, step, org_id, by, name, outcome, opinion, at = row
    decider = S.UserBrief(id=by, display_name=name) if name is not None else unknown
    return S.DecisionOut(
        step=step,
        org_id=org_id,
        decided_by=decider,
        outcome=outcome,
        opinion=opinion,
        created_at=at,
    )


def requests_out(session: Session, reqs: Sequence[Request]) -> list[S.RequestOut]:
    """Return response bodies for requests with two queries in all (decisions with their
    deciders; the chains' organisations with the requesters)."""
    if not reqs:
        return []
    unknown = S.UserBrief(id=0, display_name="（未知）")
    decisions: dict[int, list[S.DecisionOut]] = {}
    conn = session.connection()  # Core statements: no ORM execution around them
    for row in rows(conn, _decisions_query(), {"ids": [r.id for r in reqs]}):
        decisions.setdefault(row[0], []).append(_decision_out(row, unknown))
    params = {
        "org_ids": sorted({o for r in reqs for o in r.chain}),
        "user_ids": sorted({r.requested_by for r in reqs}),
    }
    orgs: dict[int, S.OrgBrief] = {}
    users: dict[int, S.UserBrief] = {}
    for k, i, code, name, kind in rows(conn, _names_query(), params):
        if k == "o":
            orgs[i] = S.OrgBrief(id=i, code=code, name=name, kind=kind)
        else:
            users[i] = S.UserBrief(id=i, display_name=name)
    return [_request_out(r, orgs, users.get(r.requested_by, unknown), decisions) for r in reqs]


def _request_out(
    r: Request,
    orgs: dict[int, S.OrgBrief],
    requester: S.UserBrief,
    decisions: dict[int, list[S.DecisionOut]],
) -> S.RequestOut:
    return S.RequestOut(
        id=r.id or 0,
        run_id=r.run_id,
        kind=r.kind,
        from_stage=r.from_stage,
        to_stage=r.to_stage,
        status=r.status,
        status_label=STATUS_LABELS.get(r.status, r.status),
        chain=[orgs[o] for o in r.chain if o in orgs],
        step=r.step,
        current_approver=orgs.get(r.current_approver_org_id or 0),
        requested_by=requester,
        on_behalf=r.on_behalf,
        comment=r.comment,
        requested_deadline=r.requested_deadline,
        return_reason=r.return_reason,
        submitted_at=r.submitted_at,
        decided_at=r.decided_at,
        decisions=decisions.get(r.id or 0, []),
    )

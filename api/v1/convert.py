"""Build response bodies from rows, batching the look-ups a page needs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import Session, col, select

from api import schemas as S
from states.catalog import DONE, Template
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


def requests_out(session: Session, reqs: Sequence[Request]) -> list[S.RequestOut]:
    """Return response bodies for requests with three queries in all (orgs, decisions, users)."""
    if not reqs:
        return []
    org_ids = {o for r in reqs for o in r.chain}
    orgs = {
        o.id: org_brief(o)
        for o in session.execute(
            select(Organisation).where(col(Organisation.id).in_(sorted(org_ids)))
        ).scalars()
    }
    decisions: dict[int, list[Decision]] = {}
    for d in session.execute(
        select(Decision)
        .where(col(Decision.request_id).in_([r.id for r in reqs]))
        .order_by(col(Decision.step))
    ).scalars():
        decisions.setdefault(d.request_id, []).append(d)
    user_ids = {r.requested_by for r in reqs} | {
        d.decided_by for ds in decisions.values() for d in ds
    }
    users = users_by_id(session, user_ids)
    unknown = S.UserBrief(id=0, display_name="（未知）")
    out = []
    for r in reqs:
        out.append(
            S.RequestOut(
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
                requested_by=users.get(r.requested_by, unknown),
                on_behalf=r.on_behalf,
                comment=r.comment,
                requested_deadline=r.requested_deadline,
                return_reason=r.return_reason,
                submitted_at=r.submitted_at,
                decided_at=r.decided_at,
                decisions=[
                    S.DecisionOut(
                        step=d.step,
                        org_id=d.org_id,
                        decided_by=users.get(d.decided_by, unknown),
                        outcome=d.outcome,
                        opinion=d.opinion,
                        created_at=d.created_at,
                    )
                    for d in decisions.get(r.id or 0, [])
                ],
            )
        )
    return out

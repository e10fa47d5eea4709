"""Which workbook a caller may have: the campaign and organisation a committee's workbook covers
(within the caller's reach), and the background work that writes it for a job."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlmodel import Session, select

from states.errors import InvalidInput, NotFound
from states.jobs.service import Work
from states.ledger import committee
from states.ledger.committee import Scope
from states.models import Campaign, Organisation
from states.orgs import is_within
from states.queries import visible_campaign
from states.users import Actor


def scope_for(session: Session, campaign_id: int, org_id: int | None, actor: Actor) -> Scope:
    """The campaign and organisation in the actor's reach; NotFound for anything else."""
    campaign, root, paths = visible_campaign(session, campaign_id, actor)
    if org_id is None:
        if len(paths) != 1:
            raise InvalidInput("请选择要导出的组织（org_id）", details={"field": "org_id"})
        org = root if paths[0] == root.path else _by_path(session, paths[0])
    else:
        found = session.get(Organisation, org_id)
        if found is None or not any(is_within(found.path, p) for p in paths):
            raise NotFound("组织不存在", details={"org_id": org_id})
        org = found
    return Scope(campaign, org)


def _by_path(session: Session, path: str) -> Organisation:
    org = session.execute(select(Organisation).where(Organisation.path == path)).scalars().first()
    if org is None:
        raise NotFound("组织不存在")
    return org


def scope_by_code(session: Session, campaign_id: int, code: str) -> Scope:
    """The campaign and the organisation with `code` inside it (the command line: no reach)."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"活动不存在：{campaign_id}", details={"campaign_id": campaign_id})
    root = session.get(Organisation, campaign.root_org_id)
    stmt = select(Organisation).where(Organisation.code == code)
    org = session.execute(stmt).scalars().first()
    if org is None or root is None or not is_within(org.path, root.path):
        raise NotFound(f"活动范围内没有组织：{code}", details={"org": code})
    return Scope(campaign, org)


def check_size(session: Session, scope: Scope, per_branch: bool) -> int:
    """How many runs the workbook covers; InvalidInput if one sheet per branch is too many."""
    total = committee.count(session, scope)
    if per_branch and total > committee.MAX_BRANCH_SHEETS:
        raise committee.too_many(total)
    return total


def committee_work(campaign_id: int, org_id: int, *, per_branch: bool, base_url: str = "") -> Work:
    """The job's work: write the committee workbook of the organisation's subtree."""

    def work(session: Session, path: Path, progress: Callable[[int, int], None]) -> str:
        campaign = session.get(Campaign, campaign_id)
        org = session.get(Organisation, org_id)
        if campaign is None or org is None:
            raise NotFound("活动或组织已不存在")
        scope = Scope(campaign, org)
        committee.write(
            session, scope, path, per_branch=per_branch, progress=progress, base_url=base_url
        )
        return committee.file_name(scope)

    return work

"""Launching campaigns (set-wise run creation) and reading their progress."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, literal, or_
from sqlalchemy import select as sa_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from states import audit, outbox
from states.catalog import DONE, Template, from_definition, get_template
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import ORG_KINDS, Campaign, Organisation, Role, Run, TemplateVersion
from states.orgs import get_org_by_code, subtree_filter
from states.schedule import StageDeadline, deadline_for, dump_schedule, parse_schedule
from states.timeutil import UTCDateTime, end_of_local_day, local_date, utcnow
from states.users import Actor
from states.workcal import load_calendar

LAUNCH_ROLES = frozenset({Role.ORGANISER, Role.ADMIN})


def freeze_template(session: Session, tpl: Template) -> TemplateVersion:
    """Return the stored row of this template version, storing it the first time."""
    row = session.execute(
        select(TemplateVersion).where(
            TemplateVersion.key == tpl.key, TemplateVersion.version == tpl.version
        )
    ).scalar_one_or_none()
    digest = tpl.digest()
    if row is None:
        row = TemplateVersion(
            key=tpl.key,
            version=tpl.version,
            name=tpl.name,
            digest=digest,
            definition=tpl.model_dump(mode="json"),
        )
        try:
            with session.begin_nested():  # two first launches at once: the loser reads the row
                session.add(row)
        except IntegrityError:
            return freeze_template(session, tpl)
    elif row.digest != digest:
        raise Conflict(
            f"模板 {tpl.key} 第 {tpl.version} 版的内容已改动但版本号未变："
            "请提高 version 后再发起活动",
            details={"template": tpl.key, "version": tpl.version},
        )
    return row


_template_cache: dict[str, Template] = {}


def template_by_digest(session: Session, version_id: int, digest: str) -> Template:
    """Return a frozen template version, parsed once per digest per process."""
    tpl = _template_cache.get(digest)
    if tpl is None:
        row = session.get(TemplateVersion, version_id)
        if row is None:
            raise NotFound("活动的模板版本不存在")
        tpl = _template_cache.setdefault(digest, from_definition(row.definition))
    return tpl


def campaign_template(session: Session, campaign: Campaign) -> Template:
    """Return the template version the campaign was launched with."""
    digest = session.exec(
        select(TemplateVersion.digest).where(TemplateVersion.id == campaign.template_version_id)
    ).first()
    if digest is None:
        raise NotFound("活动的模板版本不存在")
    return template_by_digest(session, campaign.template_version_id, digest)


def get_campaign(session: Session, campaign_id: int, actor: Actor | None = None) -> Campaign:
    """Return the campaign, or NotFound if missing or outside the actor's reach."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound("活动不存在", details={"campaign_id": campaign_id})
    if actor is not None:
        root = session.get(Organisation, campaign.root_org_id)
        if root is None or not actor.reaches(root.path):
            raise NotFound("活动不存在", details={"campaign_id": campaign_id})
    return campaign


def _participants(root: Organisation, kinds: Sequence[str]) -> Any:
    return select(Organisation.id).where(
        subtree_filter(root.path),
        col(Organisation.kind).in_(list(kinds)),
    )


def count_participants(session: Session, root: Organisation, kinds: Sequence[str]) -> int:
    """Return how many runs a launch over `root` for `kinds` would create."""
    sub = _participants(root, kinds).subquery()
    return int(session.execute(select(func.count()).select_from(sub)).scalar_one())


def past_deadlines(
    tpl: Template, plan: dict[str, StageDeadline], now: datetime
) -> list[dict[str, str]]:
    """Return the stages whose dated deadline is already past at `now`, in template order.

    Only dated deadlines can be past: one counted in days starts when the run enters the stage.
    """
    out = []
    for stage in tpl.stages:
        spec = plan.get(stage.id)
        if spec is not None and spec.date is not None and end_of_local_day(spec.date) < now:
            out.append(
                {
                    "field": f"schedule.{stage.id}",
                    "stage": stage.id,
                    "name": stage.name,
                    "deadline": spec.date.isoformat(),
                }
            )
    return out


def refuse_past_deadlines(tpl: Template, plan: dict[str, StageDeadline], now: datetime) -> None:
    """Raise InvalidInput listing every stage whose deadline is already past, if any."""
    past = past_deadlines(tpl, plan, now)
    if past:
        listed = "、".join(f"{p['name']}（{p['deadline']}）" for p in past)
        raise InvalidInput(
            f"以下阶段的截止日期已过：{listed}。发起后这些阶段一进入即为逾期并逐级督办；"
            "请改为今后的日期，或明确选择仍然发起（allow_past）",
            details=past,
        )


def launch_campaign(
    session: Session,
    *,
    template_key: str,
    root_code: str,
    kinds: Sequence[str] | None = None,
    schedule: dict[str, Any] | None = None,
    name: str | None = None,
    actor: Actor | None = None,
    now: datetime | None = None,
    batch: int = 20_000,
    progress: Callable[[int], None] | None = None,
    allow_past: bool = False,
) -> Campaign:
    """Launch a campaign: one run per participating organisation, inserted set-wise.

    A schedule with a deadline already past is refused (InvalidInput listing the stages) unless
    `allow_past` is given.
    """
    now = now or utcnow()
    tpl = get_template(template_key)
    root = get_org_by_code(session, root_code)
    if actor is not None and not (actor.holds_here_or_above(root.id or 0, root.path, LAUNCH_ROLES)):
        if not actor.reaches(root.path):
            raise NotFound(f"组织编码不存在：{root_code}")
        raise Forbidden("只有组织员或管理员可以在本组织范围内发起活动")
    kinds = list(kinds or tpl.participants)
    bad = [k for k in kinds if k not in ORG_KINDS]
    if bad:
        raise InvalidInput(f"未知的组织类型：{'、'.join(bad)}", details={"field": "kinds"})
    plan = parse_schedule(tpl, schedule, local_date(now).year)
    if not allow_past:
        refuse_past_deadlines(tpl, plan, now)
    total = count_participants(session, root, kinds)
    if total == 0:
        raise InvalidInput(
            f"「{root.name}」下没有类型为 {'、'.join(kinds)} 的组织，无法发起活动",
            details={"field": "kinds"},
        )
    version = freeze_template(session, tpl)
    campaign = Campaign(
        name=name or f"{tpl.name}（{local_date(now).year}）",
        template_version_id=version.id or 0,
        template_key=tpl.key,
        template_version=tpl.version,
        root_org_id=root.id or 0,
        kinds=kinds,
        schedule=dump_schedule(plan),
        launched_by=actor.user_id if actor else None,
        launched_at=now,
    )
    session.add(campaign)
    session.flush()
    first = tpl.stage_ids[0]
    deadline = deadline_for(campaign.schedule, first, now, lambda: load_calendar(session))
    created = _insert_runs(session, campaign, root, kinds, first, now, deadline, batch, progress)
    campaign.run_count = created
    session.flush()
    audit.append(
        session,
        stream=f"campaign:{campaign.id}",
        action="campaign.launched",
        actor_id=actor.user_id if actor else None,
        data={
            "template": tpl.key,
            "version": tpl.version,
            "root": root.code,
            "kinds": kinds,
            "runs": created,
            "schedule": campaign.schedule,
        },
    )
    outbox.enqueue(
        session,
        event_kind="campaign_launched",
        dedupe_key=f"campaign_launched:{campaign.id}",
        org_id=root.id,
        payload={"campaign_id": campaign.id, "name": campaign.name, "runs": created},
    )
    return campaign


def _insert_runs(
    session: Session,
    campaign: Campaign,
    root: Organisation,
    kinds: list[str],
    stage: str,
    now: datetime,
    deadline: datetime | None,
    batch: int,
    progress: Callable[[int], None] | None,
) -> int:
    """INSERT … SELECT the runs in id-range chunks (one statement per chunk) and count them."""
    ids = _participants(root, kinds).subquery()
    lo, hi = session.execute(select(func.min(ids.c.id), func.max(ids.c.id))).one()
    created = 0
    start = int(lo)
    while start <= int(hi):
        stop = start + batch
        chunk = _participants(root, kinds).where(
            col(Organisation.id) >= start, col(Organisation.id) < stop
        )
        source = sa_select(
            literal(campaign.id),
            col(Organisation.id),
            literal(stage),
            literal(now, UTCDateTime()),
            literal(deadline, UTCDateTime()),
            literal(1),
            literal(0),
        ).where(col(Organisation.id).in_(chunk))
        stmt = insert(Run).from_select(
            [
                "campaign_id",
                "org_id",
                "stage",
                "entered_at",
                "deadline",
                "version",
                "escalation_level",
            ],
            source,
        )
        session.execute(stmt)
        # psycopg reports rowcount -1 for this INSERT … SELECT; count with the index instead.
        total = session.exec(
            select(func.count()).select_from(Run).where(Run.campaign_id == campaign.id)
        ).one()
        n, created = int(total) - created, int(total)
        if progress is not None and n:
            progress(n)
        start = stop
    return created


@dataclass(frozen=True)
class StageCount:
    """Runs in one stage."""

    stage: str
    name: str
    runs: int
    overdue: int
    waiting: int


@dataclass(frozen=True)
class CampaignStatus:
    """A campaign's progress at a moment."""

    campaign_id: int
    name: str
    total: int
    stages: list[StageCount]
    overdue: int
    waiting: int
    done: int

    @property
    def percent_done(self) -> float:
        return round(100.0 * self.done / self.total, 1) if self.total else 0.0


def campaign_status(
    session: Session,
    campaign: Campaign,
    *,
    now: datetime | None = None,
    scope: Sequence[str] | None = None,
) -> CampaignStatus:
    """Return runs per stage, overdue, waiting for approval and done, with one grouped query.

    `scope` limits the counts to the subtrees at these paths (a committee sees its own part).
    """
    now = now or utcnow()
    tpl = campaign_template(session, campaign)
    overdue = case((col(Run.deadline) < now, 1), else_=0)
    waiting = case((col(Run.pending_request_id).is_not(None), 1), else_=0)
    stmt = select(Run.stage, func.count(), func.sum(overdue), func.sum(waiting)).where(
        Run.campaign_id == campaign.id
    )
    if scope is not None:
        stmt = stmt.join(Organisation, col(Organisation.id) == col(Run.org_id)).where(
            or_(*(subtree_filter(p) for p in scope))
        )
    rows = session.execute(stmt.group_by(Run.stage)).all()
    by_stage = {r[0]: (int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows}
    stages = [
        StageCount(sid, tpl.stage_name(sid), *by_stage.get(sid, (0, 0, 0)))
        for sid in [*tpl.stage_ids, DONE]
    ]
    return CampaignStatus(
        campaign_id=campaign.id or 0,
        name=campaign.name,
        total=sum(s.runs for s in stages),
        stages=stages,
        overdue=sum(s.overdue for s in stages if s.stage != DONE),
        waiting=sum(s.waiting for s in stages),
        done=by_stage.get(DONE, (0, 0, 0))[0],
    )

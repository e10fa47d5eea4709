"""Weekly bulletins (简报): per committee and campaign, progress per stage, overdue units, waiting
approvals and the public-notice list (通报: units at escalation level 2 or more). Overdue work owed
above the branch (a 领导点评 not yet written) never names the branch: it is counted apart and listed
against the committee that owes it (待上级完成).

Counting is set-based: one GROUP BY over a campaign's runs by (parent organisation, stage), then
the counts are rolled up the tree in Python over the parents (committees), not over runs. A
committee is any organisation inside the campaign's root subtree with runs below it. Each
bulletin is stored once per (campaign, committee, ISO week) and sent as a `bulletin` notice in
the same transaction; a retried or concurrent run stores and sends nothing twice.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from states.catalog import DONE, Template, from_definition
from states.machines import stage_label
from states.models import Bulletin, Campaign, Organisation, OutboxMessage, Run, TemplateVersion
from states.orgs import ancestor_paths, subtree_filter
from states.owners import open_above, owned_stages, owner_names, owner_path, word
from states.timeutil import local_date, utcnow

#: Names listed in one bulletin's 通报 list; the rest are counted.
NOTICE_LIST_MAX = 30
NOTICE_LEVEL = 2
#: Bulletins stored per statement.
CHUNK = 1000


def period_of(as_of: datetime) -> tuple[str, str]:
    """The ISO week of `as_of` in China: a key (`2026-W48`) and a label (`2026 年第 48 周`)."""
    year, week, _ = local_date(as_of).isocalendar()
    return f"{year}-W{week:02d}", f"{year} 年第 {week} 周"


@dataclass
class _Tally:
    stages: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    overdue: int = 0
    waiting: int = 0
    notice: list[str] = field(default_factory=list)
    notice_total: int = 0
    overdue_above: int = 0
    #: (owing organisation's name, 待点评 …) -> overdue runs waiting on it.
    owed: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total(self) -> int:
        return sum(self.stages.values())


def active_campaign_ids(session: Session) -> list[int]:
    return list(
        session.execute(
            select(col(Campaign.id))
            .where(col(Campaign.status) == "active")
            .order_by(col(Campaign.id))
        ).scalars()
    )


def tally(session: Session, campaign_id: int, as_of: datetime) -> dict[int, dict[str, Any]]:
    """Every committee's bulletin data for one campaign at `as_of`: {org id: data}."""
    camp, root_path, definition = session.execute(
        select(Campaign, col(Organisation.path), col(TemplateVersion.definition))
        .join(Organisation, col(Organisation.id) == col(Campaign.root_org_id))
        .join(TemplateVersion, col(TemplateVersion.id) == col(Campaign.template_version_id))
        .where(col(Campaign.id) == campaign_id)
    ).one()
    tpl = from_definition(definition)
    overdue = case(
        (
            (col(Run.deadline) < as_of) & (col(Run.stage) != DONE),
            1,
        ),
        else_=0,
    )
    waiting = case((col(Run.pending_request_id).is_not(None), 1), else_=0)
    owed = owned_stages({campaign_id: tpl})
    above = open_above(owed)
    overdue_above = case(((col(Run.deadline) < as_of) & above, 1), else_=0)
    groups = session.execute(
        select(
            col(Organisation.parent_id),
            col(Run.stage),
            func.count(),
            func.sum(overdue),
            func.sum(waiting),
            func.sum(overdue_above),
        )
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(col(Run.campaign_id) == campaign_id)
        .group_by(col(Organisation.parent_id), col(Run.stage))
    ).all()
    listed = session.execute(
        select(col(Organisation.parent_id), col(Organisation.name))
        .join(Run, col(Run.org_id) == col(Organisation.id))
        .where(
            col(Run.campaign_id) == campaign_id,
            col(Run.escalation_level) >= NOTICE_LEVEL,
            col(Run.stage) != DONE,
            ~above,  # work owed above the branch is never the branch's to be named for
        )
        .order_by(col(Organisation.path))
    ).all()
    owed_rows = _owed_overdue(session, campaign_id, as_of, above) if owed else []

    parent_ids = {p for p, *_ in groups if p is not None} | {p for p, _ in listed if p is not None}
    parent_ids |= {p for p, _path, _stage in owed_rows if p is not None}
    if not parent_ids:
        return {}
    parent_paths: dict[int, str] = {
        org_id: path
        for org_id, path in session.execute(
            select(col(Organisation.id), col(Organisation.path)).where(
                col(Organisation.id).in_(sorted(parent_ids))
            )
        ).all()
    }
    # Committees: the parents and their ancestors, inside the campaign's root subtree.
    wanted = {a for p in parent_paths.values() for a in ancestor_paths(p, include_self=True)}
    committees = {
        path: (org_id, name)
        for org_id, path, name in session.execute(
            select(col(Organisation.id), col(Organisation.path), col(Organisation.name)).where(
                col(Organisation.path).in_(sorted(wanted)), subtree_filter(root_path)
            )
        ).all()
    }
    chains: dict[int, list[int]] = {}
    for pid, path in parent_paths.items():
        chains[pid] = [
            committees[a][0] for a in ancestor_paths(path, include_self=True) if a in committees
        ]

    tallies: dict[int, _Tally] = defaultdict(_Tally)
    for parent_id, stage, n, n_overdue, n_waiting, n_above in groups:
        for org_id in chains.get(parent_id, []):
            t = tallies[org_id]
            t.stages[stage] += n
            t.overdue += int(n_overdue or 0)
            t.overdue_above += int(n_above or 0)
            t.waiting += int(n_waiting or 0)
    _tally_owed(session, tpl, root_path, owed_rows, chains, tallies)
    for parent_id, name in listed:
        for org_id in chains.get(parent_id, []):
            t = tallies[org_id]
            t.notice_total += 1
            if len(t.notice) < NOTICE_LIST_MAX:
                t.notice.append(name)

    names = {org_id: name for org_id, name in committees.values()}
    _, label = period_of(as_of)
    out: dict[int, dict[str, Any]] = {}
    for org_id, t in tallies.items():
        done = t.stages.get(DONE, 0)
        total = t.total
        notice_list = list(t.notice)
        if t.notice_total > len(notice_list):
            notice_list.append(f"等 {t.notice_total} 个单位")
        out[org_id] = {
            "campaign_id": campaign_id,
            "campaign": camp.name,
            "org_name": names[org_id],
            "period": label,
            "total": total,
            "done": done,
            "percent_done": round(100.0 * done / total, 1) if total else 0.0,
            "overdue": t.overdue,
            "overdue_branch": t.overdue - t.overdue_above,
            "overdue_above": t.overdue_above,
            "owed_list": [f"{name}：{what} {n} 个支部" for (name, what), n in t.owed.items()],
            "waiting": t.waiting,
            "stages": [
                {"id": s, "name": stage_label(tpl, s), "runs": t.stages.get(s, 0)}
                for s in [*tpl.stage_ids, DONE]
            ],
            "notice_list": notice_list,
            "notice_count": t.notice_total,
        }
    return out


def _owed_overdue(
    session: Session, campaign_id: int, as_of: datetime, above: Any
) -> list[tuple[int | None, str, str]]:
    """(parent id, path, stage) of the overdue runs waiting on work owed above the branch."""
    rows = session.execute(
        select(col(Organisation.parent_id), col(Organisation.path), col(Run.stage))
        .join(Run, col(Run.org_id) == col(Organisation.id))
        .where(col(Run.campaign_id) == campaign_id, col(Run.deadline) < as_of, above)
    ).all()
    return [(p, path, stage) for p, path, stage in rows]


def _tally_owed(
    session: Session,
    tpl: Template,
    root_path: str,
    rows: list[tuple[int | None, str, str]],
    chains: dict[int, list[int]],
    tallies: dict[int, _Tally],
) -> None:
    """Count overdue work owed above the branch against its owner (待上级完成), per committee."""
    owners = {
        (path, stage): owner_path(tpl, stage, path, root_path) or root_path
        for _p, path, stage in rows
    }
    names = owner_names(session, owners.values())
    for parent_id, path, stage in rows:
        name = names.get(owners[(path, stage)], "上级")
        what = f"待{word(tpl, stage)}"
        for org_id in chains.get(parent_id or 0, []):
            tallies[org_id].owed[(name, what)] += 1


def publish(session: Session, campaign_id: int, as_of: datetime) -> int:
    """Store and send this week's bulletins of one campaign; return how many were new."""
    data = tally(session, campaign_id, as_of)
    if not data:
        return 0
    period, _ = period_of(as_of)
    now = utcnow()
    dialect = session.get_bind().dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    rows = [
        {
            "campaign_id": campaign_id,
            "org_id": org_id,
            "period": period,
            "as_of": as_of,
            "data": payload,
            "created_at": now,
        }
        for org_id, payload in sorted(data.items())
    ]
    stored: list[int] = []
    for start in range(0, len(rows), CHUNK):
        stored += session.execute(
            ins(Bulletin)
            .values(rows[start : start + CHUNK])
            .on_conflict_do_nothing()
            .returning(col(Bulletin.org_id))
        ).scalars()
    new = sorted(stored)
    if new:
        session.execute(
            insert(OutboxMessage),
            [
                {
                    "dedupe_key": f"bulletin:{campaign_id}:{org_id}:{period}",
                    "event_kind": "bulletin",
                    "run_id": None,
                    "org_id": org_id,
                    "payload": data[org_id],
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for org_id in new
            ],
        )
    return len(new)


def latest(session: Session, org_id: int, campaign_id: int | None = None) -> Bulletin | None:
    """The newest stored bulletin of a committee (of one campaign, if given)."""
    stmt = select(Bulletin).where(col(Bulletin.org_id) == org_id)
    if campaign_id is not None:
        stmt = stmt.where(col(Bulletin.campaign_id) == campaign_id)
    return session.execute(stmt.order_by(col(Bulletin.as_of).desc()).limit(1)).scalars().first()

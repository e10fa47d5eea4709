"""Who owes a run's current stage, and the SQL that tells branch-owed work from work owed above.

A template says per stage who owes its work (`owner: branch | approver | launcher`). A stage owed
above the branch (领导点评, 评选表彰, 定级 …) is *open above* while the superior's record (a
review or a decision, active, linked to the run's stage) is missing and no request is pending;
once it is recorded the branch holds the ball again (it asks to move on). Reminders, the overdue
ladder, bulletins, desks and dashboards all use the same test, `open_above`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, select, true, tuple_
from sqlmodel import col

from states.catalog import BRANCH, Template
from states.glossary import owed_word
from states.models import Evidence, EvidenceLink, Organisation, Role, Run
from states.orgs import is_within, path_codes

APPROVER = "approver"
LAUNCHER = "launcher"
#: The superior's records that discharge a stage owed above.
ABOVE_KINDS = ("review", "decision")
#: Roles that owe (and see on their desk) a stage owed by their organisation.
OWNER_ROLES = {
    APPROVER: frozenset({Role.COMMITTEE, Role.ADMIN}),
    LAUNCHER: frozenset({Role.COMMITTEE, Role.ORGANISER, Role.ADMIN}),
}


def owned_stages(templates: dict[int, Template]) -> dict[int, tuple[str, ...]]:
    """{campaign id: its stage ids owed above the branch}, for campaigns that have any."""
    out = {cid: tuple(sorted(tpl.owed_stages)) for cid, tpl in templates.items()}
    return {cid: stages for cid, stages in out.items() if stages}


def recorded_above(run_id: Any = None, stage: Any = None) -> ColumnElement[bool]:
    """SQL: the superior's record for the run's current stage exists (correlated on Run)."""
    return exists(
        select(col(EvidenceLink.id))
        .join(Evidence, col(Evidence.id) == col(EvidenceLink.evidence_id))
        .where(
            col(EvidenceLink.run_id) == (col(Run.id) if run_id is None else run_id),
            col(EvidenceLink.stage) == (col(Run.stage) if stage is None else stage),
            col(Evidence.kind).in_(ABOVE_KINDS),
            col(Evidence.status) == "active",
        )
    )


def in_owed_stage(owed: dict[int, tuple[str, ...]]) -> ColumnElement[bool]:
    """SQL: the run's campaign owes its current stage above the branch."""
    pairs = [(cid, stage) for cid, stages in sorted(owed.items()) for stage in stages]
    if not pairs:
        return false()
    if len(pairs) == 1:
        return and_(col(Run.campaign_id) == pairs[0][0], col(Run.stage) == pairs[0][1])
    return tuple_(col(Run.campaign_id), col(Run.stage)).in_(pairs)


def open_above(owed: dict[int, tuple[str, ...]]) -> ColumnElement[bool]:
    """SQL: the run waits on the superior's own work (owed stage, nothing recorded, no request)."""
    if not owed:
        return false()
    return and_(
        in_owed_stage(owed),
        col(Run.pending_request_id).is_(None),
        ~recorded_above(),
    )


def owner_path(tpl: Template, stage_id: str, branch_path: str, root_path: str) -> str | None:
    """The path of the organisation owing `stage_id` of a run at `branch_path` (None: branch)."""
    owner = tpl.owner_of(stage_id)
    if owner == BRANCH:
        return None
    if owner == LAUNCHER:
        return root_path
    up = tpl.chain_for(stage_id)[0].parent or 1
    codes = path_codes(branch_path)
    if len(codes) <= up:
        return root_path
    path = "/" + "/".join(codes[:-up]) + "/"
    # A campaign never reaches above its launcher: the approver is at most the root.
    return path if is_within(path, root_path) else root_path


def _depth(column: Any) -> Any:
    return func.length(column) - func.length(func.replace(column, "/", ""))


def owed_by(
    templates: dict[int, Template], roots: dict[int, str], grants: Iterable[tuple[int, str, Role]]
) -> ColumnElement[bool]:
    """SQL on Run (joined to Organisation as the branch): the run's stage is owed by one of the
    organisations of `grants` (org id, org path, role) in the role that owes it."""
    conds: list[ColumnElement[bool]] = []
    grants = list(grants)
    for cid, tpl in sorted(templates.items()):
        for stage_id, owner in sorted(tpl.owed_stages.items()):
            orgs = {
                (oid, path)
                for oid, path, role in grants
                if role in OWNER_ROLES[owner] and is_within(path, roots[cid])
            }
            if not orgs:
                continue
            here = and_(col(Run.campaign_id) == cid, col(Run.stage) == stage_id)
            conds.append(and_(here, _owner_match(tpl, stage_id, owner, cid, roots, orgs)))
    return or_(*conds) if conds else false()


def _owner_match(
    tpl: Template,
    stage_id: str,
    owner: str,
    cid: int,
    roots: dict[int, str],
    orgs: set[tuple[int, str]],
) -> ColumnElement[bool]:
    if owner == LAUNCHER:
        return true() if any(path == roots[cid] for _o, path in orgs) else false()
    up = tpl.chain_for(stage_id)[0].parent or 1
    if up == 1:
        return col(Organisation.parent_id).in_(sorted(o for o, _p in orgs))
    return or_(
        *(
            and_(
                col(Organisation.path).startswith(path),
                _depth(col(Organisation.path)) == len(path_codes(path)) + 1 + up,
            )
            for _o, path in sorted(orgs)
        )
    )


def word(tpl: Template, stage_id: str) -> str:
    """The superior's action a stage waits for: 点评, 表彰决定, 定级 …"""
    return owed_word(tpl.stage(stage_id))


def owner_names(session: Any, paths: Iterable[str]) -> dict[str, str]:
    """{path: name} of the organisations at `paths` (one query)."""
    wanted = sorted(set(paths))
    if not wanted:
        return {}
    rows = session.execute(
        select(col(Organisation.path), col(Organisation.name)).where(
            col(Organisation.path).in_(wanted)
        )
    ).all()
    return {p: n for p, n in rows}

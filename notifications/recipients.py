"""Who receives each kind of notice: one table of rules, resolved against the tree set-wise.

An outbox row names its event kind, its run (if any), its target organisation (`org_id`) and,
for escalations, a `level` in its payload. Each rule says which organisation, relative to those,
and which roles there, receive it; the organisation's own robots and webhooks receive it too.
Escalations are cumulative: a higher level reaches everybody a lower level reached, and more.
From level 2 the supervisors (督导) holding a grant on the notice's organisation or any of its
ancestors are told too. A 通报 reaches the committees and secretaries of every organisation in
the issuing organisation's subtree, and their robots.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from sqlmodel import Session, col, select

from states.models import Campaign, Grant, Organisation, OutboxMessage, Request, Role, Run, User
from states.orgs import ancestor_paths, is_within, path_codes, subtree_filter


class Rel(StrEnum):
    """Where the audience sits, relative to the notice."""

    TARGET = "target"  # the outbox row's org_id (the approver, the committee of a bulletin)
    TARGET_PARENT = "target_parent"
    BRANCH = "branch"  # the run's organisation
    BRANCH_PARENT = "branch_parent"
    BRANCH_GRANDPARENT = "branch_grandparent"
    CAMPAIGN_ROOT = "campaign_root"  # the organisation that launched the campaign
    REQUESTER = "requester"  # the person who made the request (payload request_id)
    ORGANISER = "organiser"  # the person who launched the campaign
    AUTHOR = "author"  # the person named by the payload's author_id (a finding's supervisor)
    SUPERVISORS = "supervisors"  # supervisors on the notice's organisation or any ancestor
    SUBTREE = "subtree"  # every organisation in the target's subtree (a 通报)


LEADERS = frozenset({Role.SECRETARY, Role.COMMITTEE})
COMMITTEE = frozenset({Role.COMMITTEE})
SECRETARY = frozenset({Role.SECRETARY})
ORGANISERS = frozenset({Role.ORGANISER, Role.COMMITTEE})
SUPERVISOR = frozenset({Role.SUPERVISOR})
PERSON = frozenset[Role]()
#: The escalation level from which the supervision group is told.
SUPERVISOR_LEVEL = 2


@dataclass(frozen=True)
class Audience:
    rel: Rel
    roles: frozenset[Role] = PERSON
    min_level: int = 0


_DECIDED = (Audience(Rel.BRANCH, LEADERS), Audience(Rel.REQUESTER))
_TO_APPROVER = (Audience(Rel.TARGET, COMMITTEE),)
_SUPERVISORS = Audience(Rel.SUPERVISORS, SUPERVISOR, SUPERVISOR_LEVEL)

#: The rules, by event kind. `min_level` applies to escalations (payload "level").
RULES: dict[str, tuple[Audience, ...]] = {
    "request_submitted": _TO_APPROVER,
    "extension_requested": _TO_APPROVER,
    "request_withdrawn": _TO_APPROVER,
    "request_approved": _DECIDED,
    "request_returned": _DECIDED,
    "extension_granted": _DECIDED,
    "run_sent_back": (Audience(Rel.BRANCH, LEADERS),),
    "reminder": (Audience(Rel.BRANCH, LEADERS),),
    "phase_opened": (Audience(Rel.BRANCH, LEADERS),),
    "overdue": (
        Audience(Rel.BRANCH, LEADERS, 1),
        Audience(Rel.BRANCH_PARENT, COMMITTEE, 1),
        Audience(Rel.BRANCH_GRANDPARENT, COMMITTEE, 2),
        Audience(Rel.CAMPAIGN_ROOT, ORGANISERS, 3),
        Audience(Rel.ORGANISER, PERSON, 3),
        _SUPERVISORS,
    ),
    "approval_sla": (
        Audience(Rel.TARGET, COMMITTEE, 1),
        Audience(Rel.TARGET_PARENT, COMMITTEE, 2),
        _SUPERVISORS,
    ),
    "bulletin": (
        Audience(Rel.TARGET, COMMITTEE),
        Audience(Rel.TARGET, frozenset({Role.ORGANISER})),
    ),
    "campaign_launched": (Audience(Rel.TARGET, ORGANISERS), Audience(Rel.ORGANISER)),
    # The supervision group's findings (督导意见) on an organisation (the target) and its 通报.
    "finding_issued": (Audience(Rel.TARGET, LEADERS),),
    "finding_reminder": (Audience(Rel.TARGET, LEADERS),),
    "finding_overdue": (
        Audience(Rel.TARGET, LEADERS, 1),
        Audience(Rel.TARGET_PARENT, COMMITTEE, 1),
        Audience(Rel.AUTHOR, PERSON, 1),
        _SUPERVISORS,
    ),
    "finding_answered": (Audience(Rel.AUTHOR),),
    "circular": (Audience(Rel.SUBTREE, LEADERS),),
}

#: Reminders and the overdue ladder of a stage owed above the branch (payload `owed`): the
#: owing committee (the outbox row's org_id) is told, and the ladder climbs from it; the branch,
#: which cannot do the superior's work, is told nothing.
OWED_RULES: dict[str, tuple[Audience, ...]] = {
    "reminder": (Audience(Rel.TARGET, COMMITTEE),),
    "overdue": (
        Audience(Rel.TARGET, COMMITTEE, 1),
        Audience(Rel.TARGET_PARENT, COMMITTEE, 2),
        Audience(Rel.CAMPAIGN_ROOT, ORGANISERS, 3),
        Audience(Rel.ORGANISER, PERSON, 3),
        _SUPERVISORS,
    ),
}

#: Event kinds that count as escalations (robots may deliver them in quiet hours).
ESCALATIONS = frozenset({"overdue", "approval_sla", "finding_overdue"})


@dataclass(frozen=True)
class Person:
    user_id: int
    email: str | None


@dataclass
class Recipients:
    """The resolved audience of one notice."""

    users: dict[int, Person] = field(default_factory=dict)
    #: Organisations whose robots and webhooks get the notice.
    orgs: set[int] = field(default_factory=set)

    def user_ids(self) -> list[int]:
        return sorted(self.users)


def level_of(msg: OutboxMessage) -> int:
    try:
        return int(msg.payload.get("level", 0) or 0)
    except (TypeError, ValueError):
        return 0


def audiences(event_kind: str, level: int, owed: bool = False) -> list[Audience]:
    """Return the audiences of one notice (unknown kinds reach the target's committee)."""
    table = OWED_RULES if owed and event_kind in OWED_RULES else RULES
    rules = table.get(event_kind, (Audience(Rel.TARGET, COMMITTEE),))
    return [a for a in rules if a.min_level <= level]


def resolve(session: Session, messages: Sequence[OutboxMessage]) -> dict[int, Recipients]:
    """Resolve every message's recipients with a fixed number of queries for the whole batch."""
    run_ids = {m.run_id for m in messages if m.run_id}
    runs: dict[int, tuple[Organisation, Campaign]] = {}
    if run_ids:
        for run_id, org, camp in session.execute(
            select(Run.id, Organisation, Campaign)
            .join(Organisation, col(Organisation.id) == col(Run.org_id))
            .join(Campaign, col(Campaign.id) == col(Run.campaign_id))
            .where(col(Run.id).in_(sorted(run_ids)))
        ).all():
            runs[int(run_id)] = (org, camp)
    # Campaigns of messages without a run (bulletins, launches) come from the payload.
    camp_ids = {int(m.payload["campaign_id"]) for m in messages if m.payload.get("campaign_id")}
    camps = {c.id: c for _o, c in runs.values()}
    missing = camp_ids - set(camps)
    if missing:
        for c in session.execute(
            select(Campaign).where(col(Campaign.id).in_(sorted(missing)))
        ).scalars():
            camps[c.id] = c
    org_ids = {m.org_id for m in messages if m.org_id} | {c.root_org_id for c in camps.values()}
    orgs = _orgs_by_id(session, org_ids)
    # Ancestors by code, from the materialised paths.
    codes: set[str] = set()
    for o in [*orgs.values(), *(org for org, _c in runs.values())]:
        codes.update(path_codes(o.path)[-3:-1])
    by_code = (
        {
            o.code: o
            for o in session.execute(
                select(Organisation).where(col(Organisation.code).in_(sorted(codes)))
            ).scalars()
        }
        if codes
        else {}
    )
    req_ids = {int(m.payload["request_id"]) for m in messages if m.payload.get("request_id")}
    requesters: dict[int, int] = {}
    if req_ids:
        rows = session.execute(
            select(Request.id, Request.requested_by).where(col(Request.id).in_(sorted(req_ids)))
        ).all()
        requesters = {int(i): int(u) for i, u in rows}

    # First pass: which (organisation, roles) and which people each message needs.
    wanted: dict[int, list[tuple[int, frozenset[Role]]]] = {}
    people: dict[int, set[int]] = {}
    scopes: dict[int, str] = {}  # message id -> the path its supervisors sit on or above
    subtrees: dict[int, str] = {}  # message id -> the path of the subtree it goes to
    for m in messages:
        run_org, camp = runs.get(m.run_id or 0, (None, None))
        if camp is None and m.payload.get("campaign_id"):
            camp = camps.get(int(m.payload["campaign_id"]))
        root = orgs.get(camp.root_org_id) if camp else None
        target = orgs.get(m.org_id or 0)
        pairs: list[tuple[int, frozenset[Role]]] = []
        persons: set[int] = set()
        for aud in audiences(m.event_kind, level_of(m), bool(m.payload.get("owed"))):
            if aud.rel == Rel.REQUESTER:
                uid = requesters.get(int(m.payload.get("request_id") or 0))
                if uid:
                    persons.add(int(uid))
                continue
            if aud.rel == Rel.ORGANISER:
                if camp is not None and camp.launched_by:
                    persons.add(camp.launched_by)
                continue
            if aud.rel == Rel.AUTHOR:
                if str(m.payload.get("author_id") or "").isdigit():
                    persons.add(int(m.payload["author_id"]))
                continue
            scope = run_org or target
            if aud.rel in (Rel.SUPERVISORS, Rel.SUBTREE):
                if scope is not None:
                    (scopes if aud.rel == Rel.SUPERVISORS else subtrees)[m.id or 0] = scope.path
                continue
            org = _relative(aud.rel, target, run_org, root, by_code)
            if org is not None and org.id is not None:
                pairs.append((org.id, aud.roles))
        wanted[m.id or 0] = pairs
        people[m.id or 0] = persons

    _add_subtrees(session, subtrees, wanted)
    _add_supervisors(session, scopes, people)
    holders = _holders(session, {o for pairs in wanted.values() for o, _r in pairs})
    emails = _emails(session, {u for ps in people.values() for u in ps})
    out: dict[int, Recipients] = {}
    for m in messages:
        rec = Recipients()
        for org_id, roles in wanted[m.id or 0]:
            rec.orgs.add(org_id)
            for uid, role, email in holders.get(org_id, []):
                if role in roles:
                    rec.users[uid] = Person(uid, email)
        for uid in people[m.id or 0]:
            if uid in emails:  # active users only
                rec.users[uid] = Person(uid, emails.get(uid))
        out[m.id or 0] = rec
    return out


def _relative(
    rel: Rel,
    target: Organisation | None,
    branch: Organisation | None,
    root: Organisation | None,
    by_code: dict[str, Organisation],
) -> Organisation | None:
    """Return the organisation `rel` names; ancestors never reach above the campaign's root."""
    if rel == Rel.TARGET:
        return target
    if rel == Rel.BRANCH:
        return branch
    if rel == Rel.CAMPAIGN_ROOT:
        return root
    base, up = {
        Rel.TARGET_PARENT: (target, 1),
        Rel.BRANCH_PARENT: (branch, 1),
        Rel.BRANCH_GRANDPARENT: (branch, 2),
    }[rel]
    if base is None:
        return None
    codes = path_codes(base.path)
    if len(codes) <= up:
        return root
    org = by_code.get(codes[-1 - up])
    if org is None or (root is not None and not is_within(org.path, root.path)):
        return root  # the campaign's launching organisation is as high as a notice climbs
    return org


def _add_subtrees(
    session: Session, subtrees: dict[int, str], wanted: dict[int, list[tuple[int, frozenset[Role]]]]
) -> None:
    """Add every organisation of each message's subtree (one query a distinct subtree)."""
    ids: dict[str, list[int]] = {}
    for path in sorted(set(subtrees.values())):
        ids[path] = list(
            session.execute(select(Organisation.id).where(subtree_filter(path))).scalars()
        )
    for mid, path in subtrees.items():
        wanted[mid] += [(org_id, LEADERS) for org_id in ids[path]]


def _add_supervisors(session: Session, scopes: dict[int, str], people: dict[int, set[int]]) -> None:
    """Add the supervisors on each message's organisation or its ancestors, in one query."""
    paths = {p for path in scopes.values() for p in ancestor_paths(path, include_self=True)}
    if not paths:
        return
    rows = session.execute(
        select(Organisation.path, Grant.user_id)
        .join(Grant, col(Grant.org_id) == col(Organisation.id))
        .where(col(Organisation.path).in_(sorted(paths)), col(Grant.role) == Role.SUPERVISOR)
    ).all()
    for mid, path in scopes.items():
        people[mid] |= {int(uid) for p, uid in rows if is_within(path, p)}


def _orgs_by_id(session: Session, ids: Iterable[int]) -> dict[int, Organisation]:
    ids = sorted(set(ids))
    if not ids:
        return {}
    rows = session.execute(select(Organisation).where(col(Organisation.id).in_(ids))).scalars()
    return {o.id or 0: o for o in rows}


def _holders(session: Session, org_ids: set[int]) -> dict[int, list[tuple[int, Role, str | None]]]:
    """Active users holding any role on these organisations, by organisation."""
    if not org_ids:
        return {}
    rows = session.execute(
        select(Grant.org_id, Grant.user_id, Grant.role, User.email)
        .join(User, col(User.id) == col(Grant.user_id))
        .where(col(Grant.org_id).in_(sorted(org_ids)), col(User.is_active).is_(True))
    ).all()
    out: dict[int, list[tuple[int, Role, str | None]]] = {}
    for org_id, user_id, role, email in rows:
        out.setdefault(int(org_id), []).append((int(user_id), Role(role), email))
    return out


def _emails(session: Session, user_ids: set[int]) -> dict[int, str | None]:
    """E-mail addresses of the active users among `user_ids` (inactive users are left out);
    for people named directly (requester, organiser), not through a grant."""
    if not user_ids:
        return {}
    rows = session.execute(
        select(User.id, User.email).where(
            col(User.id).in_(sorted(user_ids)), col(User.is_active).is_(True)
        )
    ).all()
    return {int(i): e for i, e in rows}

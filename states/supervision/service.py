"""The supervision group (督导组): findings (督导意见) that require a response by a deadline, and
通报 issued to a subtree.

A finding is recorded on a run (its branch) or on an organisation by a supervisor holding the
督导 role there or above. The branch's secretary or committee answers it; the supervisor closes
it. Reminders before the deadline and the escalation after it are fired by `states.supervision.
sweep` in the deadline sweep. A 通报 names organisations with reasons; each must be inside the
issuer's reach and inside the issuing organisation's subtree, else the whole 通报 is refused as
not found and nothing is written or sent. It goes through the outbox like every notice: to the
committees and secretaries of the subtree and to its robots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, select
from sqlmodel import Session, col

from states import outbox
from states.errors import Conflict, Forbidden, InvalidInput, NotFound
from states.models import Organisation, Role, Run
from states.orgs import is_within
from states.supervision.models import Circular, CircularItem, Finding
from states.timeutil import end_of_local_day, format_local, local_date, utcnow
from states.users import Actor

#: Who may record findings and issue 通报 (on the organisation or above).
ISSUERS = frozenset({Role.SUPERVISOR})
#: Who answers a finding (on the finding's organisation itself).
ANSWERERS = frozenset({Role.SECRETARY, Role.COMMITTEE})
MAX_TEXT = 2000
MAX_TITLE = 200
MAX_REASON = 500
MAX_ITEMS = 500


@dataclass(frozen=True)
class NamedItem:
    org_id: int
    reason: str


def finding_page(finding_id: int) -> str:
    return f"/findings/{finding_id}"


def circular_page(circular_id: int) -> str:
    return f"/circulars/{circular_id}"


def _text(value: str, field: str, limit: int) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput(f"{field}不能为空", details={"field": field})
    if len(value) > limit:
        raise InvalidInput(f"{field}最多 {limit} 字", details={"field": field})
    return value


def _reached(session: Session, actor: Actor, org_id: int) -> Organisation:
    org = session.get(Organisation, org_id)
    if org is None or not actor.reaches(org.path):
        raise NotFound("组织不存在", details={"org_id": org_id})
    return org


def _may_issue(actor: Actor, org: Organisation) -> None:
    if not actor.holds_here_or_above(org.id or 0, org.path, ISSUERS):
        raise Forbidden("只有本级或上级督导可以执行此操作", details={"role": "supervisor"})


def finding_payload(f: Finding, org_name: str, author_name: str = "") -> dict:
    """What a finding's notices say (also used by the sweep)."""
    return {
        "finding_id": f.id,
        "org_name": org_name,
        "finding_text": f.text,
        "due": format_local(f.due),
        "author_id": f.created_by,
        "author_name": author_name,
        "run_id": f.run_id,
        "page": finding_page(f.id or 0),
    }


# --- findings ---------------------------------------------------------------------------------


def add_finding(
    session: Session,
    actor: Actor,
    *,
    text: str,
    due: date,
    run_id: int | None = None,
    org_id: int | None = None,
) -> Finding:
    """Record a finding on a run's branch or on an organisation, and tell its leaders."""
    if run_id is not None:
        run = session.get(Run, run_id)
        branch = session.get(Organisation, run.org_id) if run else None
        if branch is None or not actor.reaches(branch.path):
            raise NotFound("创建进度不存在", details={"run_id": run_id})
        org_id = branch.id
    org = _reached(session, actor, org_id or 0)
    _may_issue(actor, org)
    text = _text(text, "text", MAX_TEXT)
    if due < local_date(utcnow()):
        raise InvalidInput("整改期限不能早于今天", details={"field": "due"})
    finding = Finding(
        org_id=org.id or 0,
        run_id=run_id,
        text=text,
        due=end_of_local_day(due),
        created_by=actor.user_id,
    )
    session.add(finding)
    session.flush()
    payload = finding_payload(finding, org.name, actor.display_name)
    outbox.enqueue(
        session,
        event_kind="finding_issued",
        dedupe_key=f"finding:{finding.id}:issued",
        payload=payload,
        run_id=run_id,
        org_id=org.id,
    )
    return finding


def get_finding(session: Session, actor: Actor, finding_id: int) -> tuple[Finding, Organisation]:
    """A finding on an organisation within reach (others look missing)."""
    finding = session.get(Finding, finding_id)
    org = session.get(Organisation, finding.org_id) if finding else None
    if finding is None or org is None or not actor.reaches(org.path):
        raise NotFound("督导意见不存在", details={"finding_id": finding_id})
    return finding, org


def respond(session: Session, actor: Actor, finding_id: int, text: str) -> Finding:
    """The branch's answer (整改情况); tells the supervisor who recorded the finding."""
    finding, org = get_finding(session, actor, finding_id)
    if not actor.holds_on(org.id or 0, ANSWERERS):
        raise Forbidden("只有本组织的书记或委员可以回复", details={"role": "secretary"})
    if finding.status == "closed":
        raise Conflict("督导意见已办结，不能再回复", details={"rule": "finding_closed"})
    finding.response = _text(text, "response", MAX_TEXT)
    finding.responded_by = actor.user_id
    finding.responded_at = utcnow()
    finding.status = "answered"
    session.add(finding)
    session.flush()
    payload = {**finding_payload(finding, org.name), "response": finding.response}
    # One notice per answer: a later, corrected answer is told too.
    key = f"finding:{finding.id}:answered:{finding.responded_at.timestamp():.6f}"
    outbox.enqueue(
        session,
        event_kind="finding_answered",
        dedupe_key=key,
        payload=payload,
        run_id=finding.run_id,
        org_id=org.id,
    )
    return finding


def close(session: Session, actor: Actor, finding_id: int) -> Finding:
    """The supervisor closes (办结) a finding; no more reminders or escalation."""
    finding, org = get_finding(session, actor, finding_id)
    _may_issue(actor, org)
    if finding.status == "closed":
        raise Conflict("督导意见已办结", details={"rule": "finding_closed"})
    finding.status = "closed"
    finding.closed_at = utcnow()
    session.add(finding)
    session.flush()
    return finding


def findings_in_reach(
    session: Session, actor: Actor, *, open_only: bool = False, limit: int = 50, offset: int = 0
) -> tuple[list[tuple[Finding, Organisation]], int]:
    """Findings on organisations in reach, the soonest due first; and how many there are."""
    base = (
        select(Finding, Organisation)
        .join(Organisation, col(Organisation.id) == col(Finding.org_id))
        .where(actor.reach_filter())
    )
    if open_only:
        base = base.where(col(Finding.status) != "closed")
    total = session.execute(select(func.count()).select_from(base.subquery())).scalar_one()
    rows = session.execute(
        base.order_by(col(Finding.status) == "closed", col(Finding.due), col(Finding.id))
        .limit(limit)
        .offset(offset)
    ).all()
    return [(f, o) for f, o in rows], total


# --- 通报 ----------------------------------------------------------------------------------------


def issue_circular(
    session: Session,
    actor: Actor,
    *,
    org_id: int,
    title: str,
    text: str,
    items: Sequence[NamedItem],
) -> Circular:
    """Issue a 通报 to `org_id`'s subtree naming `items`; all or nothing."""
    org = _reached(session, actor, org_id)
    named = _named_orgs(session, actor, org, items)
    _may_issue(actor, org)
    title = _text(title, "title", MAX_TITLE)
    text = _text(text, "text", 20_000)
    reasons = [_text(i.reason, "reason", MAX_REASON) for i in items]
    circular = Circular(org_id=org.id or 0, title=title, text=text, created_by=actor.user_id)
    session.add(circular)
    session.flush()
    for item, reason in zip(items, reasons, strict=True):
        session.add(CircularItem(circular_id=circular.id or 0, org_id=item.org_id, reason=reason))
    payload = {
        "circular_id": circular.id,
        "org_name": org.name,
        "circular_title": title,
        "finding_text": text,
        "circular_items": [
            f"{named[i.org_id].name}：{r}" for i, r in zip(items, reasons, strict=True)
        ],
        "author_id": actor.user_id,
        "page": circular_page(circular.id or 0),
    }
    outbox.enqueue(
        session,
        event_kind="circular",
        dedupe_key=f"circular:{circular.id}",
        payload=payload,
        org_id=org.id,
    )
    session.flush()
    return circular


def _named_orgs(
    session: Session, actor: Actor, org: Organisation, items: Sequence[NamedItem]
) -> dict[int, Organisation]:
    """The listed organisations, each in reach and in the subtree (else NotFound)."""
    if not items:
        raise InvalidInput("请至少列出一个组织", details={"field": "orgs"})
    if len(items) > MAX_ITEMS:
        raise InvalidInput(f"最多列出 {MAX_ITEMS} 个组织", details={"field": "orgs"})
    ids = [i.org_id for i in items]
    if len(set(ids)) != len(ids):
        raise InvalidInput("组织不能重复列出", details={"field": "orgs"})
    found = {
        o.id or 0: o
        for o in session.execute(
            select(Organisation).where(col(Organisation.id).in_(sorted(ids)))
        ).scalars()
    }
    for org_id in ids:
        named = found.get(org_id)
        if named is None or not actor.reaches(named.path) or not is_within(named.path, org.path):
            raise NotFound("组织不存在或不在通报范围内", details={"org_id": org_id})
    return found


def get_circular(
    session: Session, actor: Actor, circular_id: int
) -> tuple[Circular, Organisation, list[tuple[CircularItem, Organisation]]]:
    """A 通报 the actor can read: issued in reach, or to a subtree holding one of their grants."""
    circular = session.get(Circular, circular_id)
    org = session.get(Organisation, circular.org_id) if circular else None
    if circular is None or org is None or not can_read_circular(actor, org.path):
        raise NotFound("通报不存在", details={"circular_id": circular_id})
    items = session.execute(
        select(CircularItem, Organisation)
        .join(Organisation, col(Organisation.id) == col(CircularItem.org_id))
        .where(col(CircularItem.circular_id) == circular_id)
        .order_by(col(Organisation.path))
    ).all()
    return circular, org, [(i, o) for i, o in items]


def can_read_circular(actor: Actor, path: str) -> bool:
    return actor.reaches(path) or any(is_within(g.org_path, path) for g in actor.grants)

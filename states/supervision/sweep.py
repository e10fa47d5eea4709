"""Reminders and escalation of open findings (督导意见), part of the deadline sweep.

Set-based like the run timers (findings are few, written by hand): one query for the open findings due now, one insert of
their notices (`ON CONFLICT DO NOTHING` on the outbox's dedupe key, so a notice is sent at most
once, ever, however many sweeps run) and one update of the escalation levels.

A reminder goes `REMIND_BEFORE` before the deadline. After it, level 1 (the organisation's
leaders, its parent's committee and the supervisor who recorded it), then one level more every
`LEVEL_STEP` up to `MAX_LEVEL`; from level 2 every supervisor on the organisation or above is told
too (notifications/recipients). A sweep that missed days sends the level due now, not every level
it missed. An answered or closed finding is left alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlmodel import Session, col

from states.db import insert_ignoring_conflicts
from states.models import Organisation, OutboxMessage
from states.supervision.models import Finding
from states.supervision.service import finding_payload
from states.timeutil import utcnow

REMIND_BEFORE = timedelta(days=3)
LEVEL_STEP = timedelta(days=3)
MAX_LEVEL = 3


def level_at(due: datetime, as_of: datetime) -> int:
    """The escalation level a finding due at `due` has reached at `as_of` (0 before the due)."""
    if as_of <= due:
        return 0
    return min(MAX_LEVEL, 1 + int((as_of - due) / LEVEL_STEP))


def _rows(kind: str, pairs: list[tuple[Finding, str, int]], as_of: datetime) -> list[dict]:
    now = utcnow()
    out = []
    for f, org_name, level in pairs:
        suffix = "reminder" if kind == "finding_reminder" else f"overdue:{level}"
        payload = {**finding_payload(f, org_name), "level": level}
        if level:
            payload["days_overdue"] = max(1, (as_of - f.due).days)
        out.append(
            {
                "dedupe_key": f"finding:{f.id}:{suffix}",
                "event_kind": kind,
                "run_id": f.run_id,
                "org_id": f.org_id,
                "payload": payload,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
            }
        )
    return out


def _send(session: Session, rows: list[dict]) -> set[str]:
    if not rows:
        return set()
    stmt = insert_ignoring_conflicts(session, OutboxMessage).returning(
        col(OutboxMessage.dedupe_key)
    )
    return set(session.execute(stmt, rows).scalars())


def remind(session: Session, as_of: datetime) -> int:
    """Send the reminder of every open finding due within `REMIND_BEFORE`."""
    found = session.execute(
        select(Finding, col(Organisation.name))
        .join(Organisation, col(Organisation.id) == col(Finding.org_id))
        .where(
            col(Finding.status) == "open",
            col(Finding.due) > as_of,
            col(Finding.due) <= as_of + REMIND_BEFORE,
            col(Finding.escalation_level) == 0,
        )
        .order_by(col(Finding.id))
    ).all()
    pairs = [(f, name, 0) for f, name in found]
    return len(_send(session, _rows("finding_reminder", pairs, as_of)))


def escalate(session: Session, as_of: datetime) -> int:
    """Send the level due now of every open finding past its deadline; raise their levels."""
    found = session.execute(
        select(Finding, col(Organisation.name))
        .join(Organisation, col(Organisation.id) == col(Finding.org_id))
        .where(
            col(Finding.status) == "open",
            col(Finding.due) < as_of,
            col(Finding.escalation_level) < MAX_LEVEL,
        )
        .order_by(col(Finding.due), col(Finding.id))
    ).all()
    pairs = [
        (f, name, lvl) for f, name in found if (lvl := level_at(f.due, as_of)) > f.escalation_level
    ]
    sent = _send(session, _rows("finding_overdue", pairs, as_of))
    for level in sorted({lvl for _f, _n, lvl in pairs}):
        ids = [f.id for f, _n, lvl in pairs if lvl == level]
        session.execute(
            update(Finding)
            .where(col(Finding.id).in_(ids), col(Finding.escalation_level) < level)
            .values(escalation_level=level)
        )
    return len(sent)


def sweep(session: Session, as_of: datetime) -> dict[str, int]:
    """Reminders and escalations of findings at `as_of`: counts by kind."""
    # A plain aware datetime (a scheduler's own datetime type may lose its zone in arithmetic).
    as_of = datetime.fromtimestamp(as_of.timestamp(), tz=UTC)
    counts = {
        "finding_reminder": remind(session, as_of),
        "finding_overdue": escalate(session, as_of),
    }
    return {k: v for k, v in counts.items() if v}

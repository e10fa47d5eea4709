"""Evidence that names members of the branch's roster: commitments and meeting attendance.

The contents are validated without the database first (`validation`); this module checks the
member ids against the 在册 members of the run's organisation and computes attendance.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from states.errors import InvalidInput
from states.members.queries import active_members

Roster = dict[int, str]


def load_roster(session: Session, org_id: int) -> Roster:
    """The 在册 members of the organisation, id -> name (empty: no roster)."""
    return {m.id or 0: m.name for m in active_members(session, org_id)}


def _bad(field: str, message: str) -> InvalidInput:
    return InvalidInput(message, details=[{"field": field, "message": message}])


def _commitment(clean: dict[str, Any], roster: Roster) -> dict[str, Any]:
    member_id = clean.get("member_id")
    if member_id is not None and member_id not in roster:
        raise _bad("member_id", f"党员 #{member_id} 不在本支部名册（在册）中")
    if member_id is None and clean.get("member") and roster:
        raise _bad("member", "本支部已有党员名册，请从名册中选择承诺人（member_id）")
    return clean


def _meeting(clean: dict[str, Any], roster: Roster) -> dict[str, Any]:
    attendees = clean.get("attendees")
    if attendees is None:
        if clean.get("absences"):
            raise _bad("absences", "请假或缺席人员须与出席人员一起从党员名册勾选")
        return clean
    if not roster:
        raise _bad("attendees", "本支部尚无党员名册，请填写应到、实到人数")
    unknown = [i for i in attendees if i not in roster]
    if unknown:
        raise _bad("attendees", f"出席人员 #{unknown[0]} 不在本支部名册（在册）中")
    reasons: dict[int, str | None] = {}
    for a in clean.get("absences") or []:
        if a["member_id"] not in roster or a["member_id"] in attendees:
            raise _bad("absences", f"缺席人员 #{a['member_id']} 不在名册中或已勾选出席")
        reasons[a["member_id"]] = a.get("reason")
    present = set(attendees)
    absences = [
        {"member_id": i, **({"reason": reasons[i]} if reasons.get(i) else {})}
        for i in roster
        if i not in present
    ]
    return {
        **clean,
        "attendees": sorted(present),
        "absences": absences,
        "expected": len(roster),
        "present": len(present),
    }


def apply_roster(kind: str, clean: dict[str, Any], roster: Roster) -> dict[str, Any]:
    """Check the member ids of `clean` against the roster; fill computed attendance."""
    if kind == "commitment":
        return _commitment(clean, roster)
    if kind == "meeting":
        return _meeting(clean, roster)
    return clean


def needs_roster(kind: str) -> bool:
    """Whether evidence of `kind` is checked against the roster."""
    return kind in ("commitment", "meeting")

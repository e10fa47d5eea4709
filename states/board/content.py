"""What a public board shows, and nothing else.

The branch's and its members' commitments (承诺), its activities per heading (践诺), the
superior's latest review once given, and the appraisal results once a survey has closed with
enough answers. Only active records counted for the run are read (a voided record never shows);
no phone numbers, no internal ids, no names of recorders.

Masked names keep their first character and add one `*` whatever the length (张三 and 张三丰
both read 张*), so a masked name does not tell its length either; a compound surname shows its
first character only (欧阳娜娜 reads 欧*).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlmodel import Session, col, select

from states.board.models import PublicBoard
from states.members.models import ACTIVE, Member
from states.models import Campaign, Evidence, EvidenceLink, Organisation
from states.run_core import load_run
from states.survey.results import PublicSummary, public_summary

SHOWN_KINDS = ("commitment", "activity", "review")


def mask(name: str) -> str:
    """张三 → 张*: the first character, then one asterisk."""
    name = name.strip()
    return f"{name[:1]}*" if name else "*"


@dataclass(frozen=True)
class Pledge:
    """One member's commitment as shown (the name masked or in full)."""

    who: str
    text: str


@dataclass(frozen=True)
class Deed:
    """One activity as shown."""

    day: date | None
    title: str
    description: str


@dataclass(frozen=True)
class Heading:
    """The activities under one heading of the template."""

    name: str
    deeds: list[Deed]


@dataclass(frozen=True)
class Review:
    """The superior's review summary."""

    achievements: str
    problems: str
    direction: str
    grade: str | None


@dataclass
class BoardContent:
    """Everything the public page of a board shows."""

    org_name: str
    campaign_name: str
    branch_pledges: list[str] = field(default_factory=list)
    member_pledges: list[Pledge] = field(default_factory=list)
    members_total: int = 0
    headings: list[Heading] = field(default_factory=list)
    review: Review | None = None
    appraisal: PublicSummary | None = None


def _records(session: Session, run_id: int) -> list[Any]:
    """The run's active commitment, activity and review records (rows of id, kind, data),
    oldest first, each once; plain rows, not ORM objects (a board holds hundreds)."""
    rows = session.execute(
        select(Evidence.id, Evidence.kind, Evidence.data)
        .join(EvidenceLink, col(EvidenceLink.evidence_id) == col(Evidence.id))
        .where(
            EvidenceLink.run_id == run_id,
            col(Evidence.kind).in_(SHOWN_KINDS),
            Evidence.status == "active",
        )
        .order_by(col(Evidence.created_at), col(Evidence.id))
    ).all()
    return list({row.id: row for row in rows}.values())


def _roster(session: Session, org_id: int) -> dict[int, tuple[str, bool]]:
    """{member id: (name, 在册)} of the branch's roster."""
    rows = session.execute(
        select(Member.id, Member.name, Member.status).where(Member.org_id == org_id)
    ).all()
    return {int(i): (str(n), s == ACTIVE) for i, n, s in rows}


def _pledges(
    records: list[Any], roster: dict[int, tuple[str, bool]], masked: bool
) -> tuple[list[str], list[Pledge]]:
    branch: list[str] = []
    members: list[Pledge] = []
    for ev in records:
        if ev.kind != "commitment":
            continue
        data = ev.data or {}
        member_id = data.get("member_id")
        name = roster.get(member_id, ("", False))[0] if member_id else data.get("member")
        if not member_id and not name:
            branch.append(str(data.get("text", "")))
            continue
        who = str(name or "党员")
        members.append(Pledge(mask(who) if masked else who, str(data.get("text", ""))))
    return branch, members


def _day(value: Any) -> date | None:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        return None


def _headings(records: list[Any], names: list[str]) -> list[Heading]:
    """Activities grouped under the template's headings (others after them), newest first."""
    groups: dict[str, list[Deed]] = {n: [] for n in names}
    for ev in records:
        if ev.kind == "activity":
            data = ev.data or {}
            deed = Deed(
                _day(data.get("date")), str(data.get("title", "")), str(data.get("description", ""))
            )
            groups.setdefault(str(data.get("heading", "")), []).append(deed)
    return [
        Heading(n, sorted(d, key=lambda x: x.day or date.min, reverse=True))
        for n, d in groups.items()
    ]


def _review(records: list[Any]) -> Review | None:
    reviews = [ev for ev in records if ev.kind == "review"]
    if not reviews:
        return None
    data = reviews[-1].data or {}
    return Review(
        str(data.get("achievements", "")),
        str(data.get("problems", "")),
        str(data.get("direction", "")),
        data.get("grade"),
    )


def board_content(session: Session, board: PublicBoard) -> BoardContent:
    """What the public page of `board` shows."""
    ctx = load_run(session, board.run_id, None)
    org = session.get(Organisation, board.org_id) or ctx.org
    campaign = session.get(Campaign, board.campaign_id) or ctx.campaign
    records = _records(session, board.run_id)
    roster = _roster(session, board.org_id)
    branch, members = _pledges(records, roster, board.mask_names)
    return BoardContent(
        org_name=org.name,
        campaign_name=campaign.name,
        branch_pledges=branch,
        member_pledges=members,
        members_total=sum(1 for _, active in roster.values() if active),
        headings=_headings(records, list(ctx.tpl.headings)),
        review=_review(records),
        appraisal=public_summary(session, board.run_id),
    )

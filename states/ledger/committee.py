"""A committee's 台账 for one campaign: a summary sheet with one row per branch (stage, deadline,
overdue days, escalation level, grade) and, on request, one sheet per branch.

The summary is one set-based query streamed in chunks (`yield_per`: a server-side cursor on
PostgreSQL), each chunk's rows written to disk by openpyxl's write-only mode before the next is
fetched, so memory stays flat whatever the number of runs; `progress(done, total)` is called
after every chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from openpyxl import Workbook
from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from states.campaigns import campaign_template
from states.catalog import DONE, Template
from states.errors import InvalidInput
from states.ledger import run_book
from states.ledger.cells import Sheet, unique_title
from states.machines import stage_label
from states.models import Campaign, Evidence, EvidenceLink, Organisation, Run
from states.orgs import subtree_filter
from states.timeutil import local_date, utcnow

Progress = Callable[[int, int], None]
CHUNK = 2000
#: One sheet per branch is for a general branch or a hospital, not a whole city.
MAX_BRANCH_SHEETS = 500

SUMMARY_HEADERS = [
    ("序号", 7),
    ("组织编码", 14),
    ("组织名称", 30),
    ("上级组织", 26),
    ("当前阶段", 12),
    ("截止日期", 17),
    ("逾期天数", 9),
    ("督办级别", 9),
    ("等次", 8),
    ("完成时间", 17),
]


@dataclass(frozen=True)
class Scope:
    """The campaign and the organisation whose subtree the workbook covers."""

    campaign: Campaign
    org: Organisation


def _grades(campaign_id: int) -> Any:
    """Per run, the newest active decision record carrying a grade (the 定级)."""
    return (
        sa_select(col(EvidenceLink.run_id), func.max(Evidence.id).label("evidence_id"))
        .join(Evidence, col(Evidence.id) == col(EvidenceLink.evidence_id))
        .join(Run, col(Run.id) == col(EvidenceLink.run_id))
        .where(
            col(Run.campaign_id) == campaign_id,
            col(Evidence.kind) == "decision",
            col(Evidence.status) == "active",
            col(Evidence.subject).is_not(None),
        )
        .group_by(col(EvidenceLink.run_id))
        .subquery()
    )


def _summary_query(scope: Scope) -> Any:
    parent = aliased(Organisation)
    graded = _grades(scope.campaign.id or 0)
    grade = aliased(Evidence)
    return (
        sa_select(
            col(Organisation.code),
            col(Organisation.name),
            col(parent.name),
            col(Run.id),
            col(Run.stage),
            col(Run.deadline),
            col(Run.escalation_level),
            col(Run.completed_at),
            col(grade.subject),
        )
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .outerjoin(parent, col(parent.id) == col(Organisation.parent_id))
        .outerjoin(graded, graded.c.run_id == col(Run.id))
        .outerjoin(grade, col(grade.id) == graded.c.evidence_id)
        .where(col(Run.campaign_id) == scope.campaign.id, subtree_filter(scope.org.path))
        .order_by(col(Organisation.path))
    )


def count(session: Session, scope: Scope) -> int:
    """How many runs the workbook covers."""
    stmt = (
        select(func.count())
        .select_from(Run)
        .join(Organisation, col(Organisation.id) == col(Run.org_id))
        .where(Run.campaign_id == scope.campaign.id, subtree_filter(scope.org.path))
    )
    return int(session.execute(stmt).scalar_one())


def _rows(session: Session, scope: Scope) -> Iterator[Any]:
    stmt = _summary_query(scope).execution_options(yield_per=CHUNK)
    yield from session.execute(stmt)


def overdue_days(deadline: datetime | None, stage: str, now: datetime) -> int | None:
    """Whole days (Beijing calendar) past the deadline, or None when not overdue."""
    if deadline is None or stage == DONE or deadline >= now:
        return None
    return max(1, (local_date(now) - local_date(deadline)).days)


def too_many(total: int) -> InvalidInput:
    """The refusal of one sheet per branch for more than `MAX_BRANCH_SHEETS` branches."""
    return InvalidInput(
        f"每个支部一张工作表最多 {MAX_BRANCH_SHEETS} 个支部（本范围 {total} 个）："
        "请选择更小的组织范围，或只导出汇总表",
        details={"field": "per_branch", "limit": MAX_BRANCH_SHEETS},
    )


def file_name(scope: Scope) -> str:
    """The workbook's file name: 台账汇总-<organisation>-<campaign>.xlsx."""
    raw = f"台账汇总-{scope.org.name}-{scope.campaign.name}.xlsx"
    return "".join("_" if ch in '\\/:*?"<>|' else ch for ch in raw)


def write(
    session: Session,
    scope: Scope,
    out: Path | IO[bytes],
    *,
    per_branch: bool = False,
    progress: Progress | None = None,
    base_url: str = "",
) -> int:
    """Write the committee workbook to `out`; return the number of runs it covers."""
    total = count(session, scope)
    if per_branch and total > MAX_BRANCH_SHEETS:
        raise too_many(total)
    book = Workbook(write_only=True)
    tpl = campaign_template(session, scope.campaign)
    run_ids = _summary(book, session, scope, tpl, total, progress)
    if per_branch:
        _branches(book, session, run_ids, total, progress, base_url)
    book.save(out)
    return total


def _summary(
    book: Workbook,
    session: Session,
    scope: Scope,
    tpl: Template,
    total: int,
    progress: Progress | None,
) -> list[int]:
    title = f"{scope.campaign.name} · {scope.org.name} 台账汇总（{total} 个）"
    sheet = Sheet(book, "汇总", SUMMARY_HEADERS, title=title)
    labels: dict[str, str] = {}
    now = utcnow()
    run_ids: list[int] = []
    keep = total <= MAX_BRANCH_SHEETS
    for code, name, parent, run_id, stage, deadline, level, completed, grade in _rows(
        session, scope
    ):
        label = labels.get(stage) or labels.setdefault(stage, stage_label(tpl, stage))
        days = overdue_days(deadline, stage, now)
        sheet.append(
            [sheet.rows + 1, code, name, parent, label, deadline, days, level, grade, completed]
        )
        if keep:
            run_ids.append(int(run_id))
        if progress and sheet.rows % CHUNK == 0:
            progress(sheet.rows, total)
    if progress:
        progress(sheet.rows, total)
    return run_ids


def _branches(
    book: Workbook,
    session: Session,
    run_ids: list[int],
    total: int,
    progress: Progress | None,
    base_url: str,
) -> None:
    taken = {"汇总"}
    for n, run_id in enumerate(run_ids, start=1):
        data = run_book.load(session, run_id, None)
        name = unique_title(f"{data.ctx.org.code} {data.ctx.org.name}", taken)
        run_book.branch_sheet(book, data, name, base_url)
        session.expunge_all()
        if progress and n % 50 == 0:
            progress(total, total)

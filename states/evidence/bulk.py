"""Bulk entry from the roster: pasted text, uploaded sheets and ticked attendance into items.

Pure functions, no database: the pages (`api/web/bulk.py`) read the roster, call these, and
write the items with one `states.evidence.records.record_batch` call (all-or-nothing).

* `parse_paste(text)`: two columns (姓名, 承诺) per line, tab- or comma-separated, as copied
  from a spreadsheet (quoted cells with line breaks too); blank lines and a header line skipped.
* `read_commitment_sheet(path)`: the same rows from a CSV/XLSX file through `read_sheet`
  (bounded: a zip bomb or an oversized file is `TooLarge`/`InvalidInput`, never a crash).
* `match_roster(rows, roster)`: names to member ids; unknown names, names the roster holds
  twice and names given twice are row errors.
* `commitment_items(texts)` and `meeting_item(...)`: the items `record_batch` takes.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from states.errors import InvalidInput
from states.sheets import SheetLimits, TooLarge, clean_text, read_sheet, shown

#: The key of the branch's own (collective) commitment in `texts` maps.
BRANCH = 0
BRANCH_NAMES = frozenset({"支部", "（支部）", "(支部)", "支部集体承诺", "支部承诺", "branch"})
TEXT_MAX = 2000
REASON_MAX = 50
MAX_PASTE_CHARS = 400_000
MAX_PASTE_ROWS = 2000
NAME_HEADERS = frozenset({"姓名", "名字", "党员", "党员姓名", "name"})
TEXT_HEADERS = frozenset({"承诺", "承诺内容", "text", "commitment"})


@dataclass(frozen=True)
class Pasted:
    """One row of pasted text or of a sheet: its line/row number, a name and a commitment."""

    row: int
    name: str
    text: str


@dataclass(frozen=True)
class RowError:
    """A problem with one pasted or uploaded row (row 0: the whole input)."""

    row: int
    name: str
    message: str


@dataclass(frozen=True)
class RosterEntry:
    """What matching needs of a member: id and name."""

    id: int
    name: str


# --------------------------------------------------------------------------- pasted text


def parse_paste(text: str) -> tuple[list[Pasted], list[RowError]]:
    """Return the rows of pasted text and the rows that are not (姓名, 承诺) pairs."""
    if len(text) > MAX_PASTE_CHARS:
        raise TooLarge(
            f"粘贴的内容过多：{len(text):,} 个字符，上限 {MAX_PASTE_CHARS:,}",
            details={"field": "paste", "limit": MAX_PASTE_CHARS},
        )
    lines = _tab_rows(text) if "\t" in text else _comma_rows(text)
    return _to_rows(lines)


def _tab_rows(text: str) -> Iterable[tuple[int, list[str]]]:
    """Rows of tab-separated text; quoted cells may hold line breaks (as spreadsheets copy)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", strict=False)
    start = 1
    for cells in reader:
        yield start, cells
        start = reader.line_num + 1


def _comma_rows(text: str) -> Iterable[tuple[int, list[str]]]:
    """Rows split at the first comma (ASCII or full-width): commitments hold commas too."""
    for num, line in enumerate(text.splitlines(), start=1):
        cut = min((i for i in (line.find(","), line.find("，")) if i >= 0), default=-1)
        yield num, ([line] if cut < 0 else [line[:cut], line[cut + 1 :]])


def _to_rows(lines: Iterable[tuple[int, list[str]]]) -> tuple[list[Pasted], list[RowError]]:
    rows: list[Pasted] = []
    errors: list[RowError] = []
    for num, cells in lines:
        cells = [clean_text(c) for c in cells]
        if not any(cells) or (not rows and not errors and _is_header(cells)):
            continue
        if len(rows) + len(errors) >= MAX_PASTE_ROWS:
            raise InvalidInput(
                f"行数超过上限：最多 {MAX_PASTE_ROWS:,} 行（第 {num} 行超出）",
                details={"field": "paste", "row": num, "limit": MAX_PASTE_ROWS},
            )
        item = _row(num, cells)
        if isinstance(item, RowError):
            errors.append(item)
        else:
            rows.append(item)
    return rows, errors


def _is_header(cells: Sequence[str]) -> bool:
    return cells[0].lower() in NAME_HEADERS


def _row(num: int, cells: Sequence[str]) -> Pasted | RowError:
    name = cells[0]
    text = " ".join(c for c in cells[1:] if c)
    if not name:
        return RowError(num, "", f"第 {num} 行：缺少姓名（应为两列：姓名、承诺）")
    if not text:
        return RowError(num, name, f"第 {num} 行：「{shown(name, 20)}」缺少承诺内容")
    if len(text) > TEXT_MAX:
        return RowError(
            num, name, f"第 {num} 行：承诺内容过长：{len(text):,} 字，最多 {TEXT_MAX} 字"
        )
    return Pasted(num, name, text)


# --------------------------------------------------------------------------- sheets


def read_commitment_sheet(
    path: Path, limits: SheetLimits | None = None
) -> tuple[list[Pasted], list[RowError]]:
    """Return the (姓名, 承诺) rows of a CSV/XLSX file; `InvalidInput`/`TooLarge` if unreadable."""
    sheet = read_sheet(path, limits)
    header = [clean_text(h).lower() for h in sheet.header]
    name_col = next((i for i, h in enumerate(header) if h in NAME_HEADERS), None)
    text_col = next((i for i, h in enumerate(header) if h in TEXT_HEADERS), None)
    if name_col is None or text_col is None:
        raise InvalidInput(
            f"第 {sheet.header_row} 行应为表头，须包含「姓名」和「承诺」两列（或 name、text）",
            details={"field": "file", "row": sheet.header_row},
        )

    def cell(cells: list[str], i: int) -> str:
        return cells[i] if i < len(cells) else ""

    lines = ((num, [cell(c, name_col), cell(c, text_col)]) for num, c in sheet.records)
    return _to_rows(lines)


# --------------------------------------------------------------------------- the roster


def match_roster(
    rows: Sequence[Pasted], roster: Sequence[RosterEntry]
) -> tuple[dict[int, str], list[RowError]]:
    """Map each row to its member's id (`BRANCH` for the branch); name the rows that fail."""
    by_name: dict[str, list[int]] = {}
    for m in roster:
        by_name.setdefault(clean_text(m.name), []).append(m.id)
    texts: dict[int, str] = {}
    first_row: dict[int, int] = {}
    errors: list[RowError] = []
    for r in rows:
        ids = [BRANCH] if r.name in BRANCH_NAMES else by_name.get(r.name, [])
        label = shown(r.name, 20)
        if not ids:
            errors.append(RowError(r.row, r.name, f"第 {r.row} 行：名册中没有「{label}」"))
        elif len(ids) > 1:
            msg = f"第 {r.row} 行：名册中有 {len(ids)} 名「{label}」，请在下方表单中逐个填写"
            errors.append(RowError(r.row, r.name, msg))
        elif ids[0] in first_row:
            msg = f"第 {r.row} 行：「{label}」重复（第 {first_row[ids[0]]} 行已填写）"
            errors.append(RowError(r.row, r.name, msg))
        else:
            texts[ids[0]] = r.text
            first_row[ids[0]] = r.row
    return texts, errors


def duplicate_names(roster: Sequence[RosterEntry]) -> set[str]:
    """Names the roster holds more than once (paste cannot tell these members apart)."""
    counts = Counter(clean_text(m.name) for m in roster)
    return {name for name, n in counts.items() if n > 1}


# --------------------------------------------------------------------------- items


def commitment_items(texts: dict[int, str]) -> list[tuple[str, dict[str, Any]]]:
    """One `commitment` item per non-empty text, in the order given (`BRANCH`: the branch's)."""
    items: list[tuple[str, dict[str, Any]]] = []
    for member_id, text in texts.items():
        if not text.strip():
            continue
        data: dict[str, Any] = {"text": text.strip()}
        if member_id != BRANCH:
            data["member_id"] = member_id
        items.append(("commitment", data))
    return items


@dataclass(frozen=True)
class Attendance:
    """Who came (ids in roster order) and who did not, each with an optional reason."""

    attendees: list[int]
    absences: list[dict[str, Any]]


def attendance(
    roster: Sequence[RosterEntry], present: Iterable[int], reasons: dict[int, str]
) -> tuple[Attendance, dict[int, str]]:
    """Attendance from the ticked ids; errors by member id (a reason over `REASON_MAX`)."""
    ticked = set(present)
    attendees = [m.id for m in roster if m.id in ticked]
    absences: list[dict[str, Any]] = []
    errors: dict[int, str] = {}
    for m in roster:
        if m.id in ticked:
            continue
        reason = clean_text(reasons.get(m.id, ""))
        if len(reason) > REASON_MAX:
            errors[m.id] = f"缺席原因最多 {REASON_MAX} 字"
        absences.append({"member_id": m.id, **({"reason": reason} if reason else {})})
    return Attendance(attendees, absences), errors


def meeting_item(
    *, title: str, date: str, notes: str, att: Attendance
) -> tuple[str, dict[str, Any]]:
    """The `meeting` item with its attendance (expected/present are computed from the roster)."""
    data: dict[str, Any] = {
        "date": date,
        "title": title,
        "attendees": att.attendees,
        "absences": att.absences,
    }
    if notes:
        data["notes"] = notes
    return "meeting", data

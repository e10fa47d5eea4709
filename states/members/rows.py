"""One roster row on its own: the columns of a roster file, and what each cell must look like.

A roster file (CSV/XLSX, read by `states.sheets.read_sheet`) has the columns 姓名, 支部编码,
党小组编码, 类别, 入党日期, 党员编号, 手机号 and optionally 状态, 状态日期 (English headers too:
name, branch_code, group_code, category, joined_on, member_no, phone, status, status_on). This
module checks everything a row can be checked for without the database: names, categories,
dates (not in the future, not before 1921-07-01), phones, member numbers, and that no cell of
the row holds a national ID number (we never store them). `states.members.importer` checks the
rest (branches, 党小组, reach, duplicates) chunk by chunk.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from states.members.models import CATEGORIES, STATUSES
from states.orgs import CODE_RE
from states.sheets import clean_text, formula_prefixed, shown

#: Canonical field -> Chinese header (also the `column` of a row error).
HEADERS: dict[str, str] = {
    "name": "姓名",
    "branch_code": "支部编码",
    "group_code": "党小组编码",
    "category": "类别",
    "joined_on": "入党日期",
    "member_no": "党员编号",
    "phone": "手机号",
    "status": "状态",
    "status_on": "状态日期",
}
REQUIRED = ("name", "branch_code", "category", "joined_on")
ALIASES: dict[str, str] = {
    **{zh: key for key, zh in HEADERS.items()},
    **{key: key for key in HEADERS},
    "手机": "phone",
    "手机号码": "phone",
    "联系电话": "phone",
    "党员类别": "category",
    "党小组": "group_code",
}
CATEGORY_ALIASES: dict[str, str] = {
    "正式": "正式党员",
    "预备": "预备党员",
    "full": "正式党员",
    "probationary": "预备党员",
}
FOUNDED = date(1921, 7, 1)
MAX_NAME = 100
MEMBER_NO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}\Z")
_MOBILE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})\Z")
_LANDLINE = re.compile(r"0\d{2,3}-?\d{7,8}(?:-\d{1,6})?\Z")
_DATE = re.compile(r"(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?\Z")
_DATE_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})\Z")
_ID_CANDIDATE = re.compile(r"(?<![0-9])(\d{17}[0-9Xx]|\d{15})(?![0-9A-Za-z])")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


@dataclass(slots=True)
class MemberRow:
    """One valid data row, cleaned; codes are as written (matched in any case)."""

    row: int
    name: str
    branch_code: str
    group_code: str | None
    category: str
    joined_on: date
    member_no: str | None
    phone: str | None
    status: str | None
    status_on: date | None


@dataclass(frozen=True)
class RowError:
    """One problem: spreadsheet row number, Chinese column header, Chinese message."""

    row: int
    column: str
    message: str


class Problems:
    """The bad rows of one import: the first `limit` errors kept, all of them counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.errors: list[RowError] = []
        self.count = 0

    def add(self, *errors: RowError) -> None:
        """Count these errors and keep them while there is room."""
        self.count += len(errors)
        for error in errors:
            self.keep(error)

    def keep(self, error: RowError) -> None:
        """Keep an error already counted, while there is room."""
        if len(self.errors) < self.limit:
            self.errors.append(error)

    def room(self) -> int:
        """How many more errors are worth fetching (at least 1, so a count comes back)."""
        return max(self.limit - len(self.errors), 1)

    def sorted(self) -> list[RowError]:
        """The kept errors by row, then in the file's column order."""
        order = list(HEADERS.values())
        return sorted(
            self.errors, key=lambda e: (e.row, order.index(e.column) if e.column in order else 99)
        )


def match_header(cells: Sequence[str]) -> dict[str, int]:
    """Map canonical field -> column index; the first matching column wins."""
    columns: dict[str, int] = {}
    for index, cell in enumerate(cells):
        text = clean_text(cell)
        key = ALIASES.get(text) or ALIASES.get(text.lower())
        if key is not None and key not in columns:
            columns[key] = index
    return columns


def missing_columns(columns: dict[str, int]) -> list[str]:
    """The Chinese headers of the required columns a header lacks."""
    return [HEADERS[key] for key in REQUIRED if key not in columns]


def parse_row(
    num: int, cells: Sequence[str], columns: dict[str, int], today: date
) -> tuple[MemberRow | None, list[RowError]]:
    """Check one row on its own; return it cleaned (None when it has errors) and its errors."""
    errors = list(_id_number_errors(num, cells, columns)) if _long_cell(cells) else []
    width = len(cells)
    values: dict[str, Any] = {}
    for key, index in columns.items():
        text = cells[index] if index < width else ""
        if text and not text.isprintable():  # printable text holds nothing clean_text removes
            text = clean_text(text)
        value, message = _CHECKS[key](text, today)
        if message is not None:
            errors.append(RowError(num, HEADERS[key], message))
        values[key] = value
    if errors:
        return None, errors
    get = values.get
    row = MemberRow(
        num,
        values["name"],
        values["branch_code"],
        get("group_code"),
        values["category"],
        values["joined_on"],
        get("member_no"),
        get("phone"),
        get("status"),
        get("status_on"),
    )
    return row, []


Checked = tuple[Any, str | None]


def _name(text: str, _: date) -> Checked:
    if not text:
        return "", "姓名不能为空"
    if len(text) > MAX_NAME:
        return "", f"姓名过长：最多 {MAX_NAME} 个字"
    if formula_prefixed(text):
        return "", f"姓名不能以 = + - @ 开头（在表格软件中会被当作公式）：{shown(text)}"
    return text, None


def _code(text: str, label: str, required: bool) -> Checked:
    if not text:
        return None, (f"{label}不能为空" if required else None)
    if not CODE_RE.match(text):
        return None, f"{label}格式不正确：{shown(text)}"
    return text, None


def _category(text: str, _: date) -> Checked:
    if text in CATEGORIES:
        return text, None
    if not text:
        return "", "类别不能为空"
    value = CATEGORY_ALIASES.get(text.lower())
    if value is None:
        return "", f"类别无效：{shown(text)}（应为 {'、'.join(CATEGORIES)} 之一）"
    return value, None


def parse_date(text: str) -> date | None:
    """Read 2001-07-01, 2001/7/1, 2001.7.1, 2001年7月1日 or 20010701; None if not a date."""
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        try:
            return date.fromisoformat(text)
        except ValueError:
            return None
    match = _DATE.match(text) or _DATE_COMPACT.match(text)
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _date(text: str, label: str, required: bool, today: date) -> Checked:
    if not text:
        return None, (f"{label}不能为空" if required else None)
    value = parse_date(text.removesuffix("T00:00:00"))
    if value is None:
        return None, f"{label}不是有效日期：{shown(text)}（请写成 2001-07-01）"
    if value > today:
        return None, f"{label}不能晚于今天：{value.isoformat()}"
    if value < FOUNDED:
        return None, f"{label}不能早于 1921-07-01：{value.isoformat()}"
    return value, None


def _member_no(text: str, _: date) -> Checked:
    if not text:
        return None, None
    if not MEMBER_NO.match(text):
        msg = f"党员编号格式不正确：{shown(text)}（只含字母、数字、点、下划线、连字符，最长 32 位）"
        return None, msg
    return text, None


def normalise_phone(text: str) -> str | None:
    """Return a mobile number as 11 digits or a landline as written; None if neither."""
    if len(text) == 11 and text.isdigit() and text[0] == "1" and text[1] in "3456789":
        return text
    compact = re.sub(r"[\s()（）]", "", text)
    mobile = _MOBILE.match(compact.replace("-", ""))
    if mobile:
        return mobile.group(1)
    return compact if _LANDLINE.match(compact) else None


def _phone(text: str, _: date) -> Checked:
    if not text:
        return None, None
    value = normalise_phone(text)
    if value is None:
        return None, f"手机号格式不正确：{shown(text)}（应为 11 位手机号或带区号的固定电话）"
    return value, None


def _status(text: str, _: date) -> Checked:
    if text and text not in STATUSES:
        return None, f"状态无效：{shown(text)}（应为 {'、'.join(STATUSES)} 之一）"
    return text or None, None


#: The check of each column: (cleaned text, today) -> (value, error message or None).
_CHECKS: dict[str, Callable[[str, date], Checked]] = {
    "name": _name,
    "branch_code": lambda t, _: _code(t, "支部编码", True),
    "group_code": lambda t, _: _code(t, "党小组编码", False),
    "category": _category,
    "joined_on": lambda t, today: _date(t, "入党日期", True, today),
    "member_no": _member_no,
    "phone": _phone,
    "status": _status,
    "status_on": lambda t, today: _date(t, "状态日期", False, today),
}


def _long_cell(cells: Sequence[str]) -> bool:
    """Whether any cell is long enough to hold a national ID number (15 characters)."""
    return bool(cells) and max(map(len, cells)) >= 15


def is_id_number(text: str) -> bool:
    """Whether `text` is a mainland resident ID number (18 digits with a valid check character
    and birth date, or the old 15-digit form with a valid birth date)."""
    if len(text) == 15:
        return _birth_ok("19" + text[6:12])
    if len(text) != 18 or not _birth_ok(text[6:14]):
        return False
    total = sum(int(d) * w for d, w in zip(text[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == text[17].upper()


def _birth_ok(yyyymmdd: str) -> bool:
    try:
        born = date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return 1900 <= born.year <= 2100


def _id_number_errors(
    num: int, cells: Sequence[str], columns: dict[str, int]
) -> Iterator[RowError]:
    """A national ID number in any cell of the row (named columns or not) is refused."""
    names = {index: HEADERS[key] for key, index in columns.items()}
    for index, cell in enumerate(cells):
        if len(cell) < 15 or not any(is_id_number(m) for m in _ID_CANDIDATE.findall(cell)):
            continue
        column = names.get(index, f"第 {index + 1} 列")
        yield RowError(num, column, "不得填写身份证号码：名册不保存身份证号，请删除该内容")


def mask_phone(phone: str | None) -> str | None:
    """138****1234 for a mobile; a landline keeps its area code and last 4 digits."""
    if not phone:
        return phone
    if len(phone) == 11 and phone.isdigit():
        return f"{phone[:3]}****{phone[-4:]}"
    if len(phone) >= 8:
        head = phone.split("-")[0] if "-" in phone else phone[:3]
        return f"{head}-****{phone[-4:]}"
    return "****"

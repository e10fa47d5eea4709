"""Writing sheets: Chinese headers in bold, frozen header rows, column widths, A4 landscape with
the title rows repeated on every printed page, dates in Beijing time, and text never read as a
formula (a cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage return is stored as text
with Excel's quote prefix, so neither opening nor editing it evaluates anything)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import Cell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet._write_only import WriteOnlyWorksheet

from states.timeutil import to_local

RISKY = ("=", "+", "-", "@", "\t", "\r")
DATE_FORMAT = "yyyy-mm-dd"
TIME_FORMAT = "yyyy-mm-dd hh:mm"
A4 = "9"
MAX_CELL = 32_000  # Excel keeps at most 32,767 characters in a cell
_BOLD = Font(bold=True)
_TITLE = Font(bold=True, size=14)
_WRAP = Alignment(wrap_text=True, vertical="top")


def cell(ws: WriteOnlyWorksheet, value: Any) -> Any:
    """One cell: local naive datetimes with a date format, text guarded against formulas."""
    if isinstance(value, datetime):
        c = WriteOnlyCell(ws, value=to_local(value).replace(tzinfo=None))
        c.number_format = TIME_FORMAT
        return c
    if isinstance(value, date):
        c = WriteOnlyCell(ws, value=value)
        c.number_format = DATE_FORMAT
        return c
    if isinstance(value, str):
        return text_cell(ws, value)
    return value


def text_cell(ws: WriteOnlyWorksheet, value: str) -> Any:
    """A text cell; risky leading characters get the quote prefix and stay text."""
    value = value[:MAX_CELL]
    if not value.startswith(RISKY):
        return value
    c = WriteOnlyCell(ws, value=value)
    c.data_type = "s"
    c.quotePrefix = True
    return c


class Sheet:
    """A write-only sheet with a title row, a bold header row and print setup."""

    def __init__(
        self,
        book: Workbook,
        name: str,
        headers: Sequence[tuple[str, int]],
        *,
        title: str | None = None,
    ) -> None:
        self.ws: WriteOnlyWorksheet = book.create_sheet(safe_title(name))
        self.rows = 0
        for i, (_, width) in enumerate(headers, start=1):
            self.ws.column_dimensions[get_column_letter(i)].width = width
        self._print_setup()
        top = int(bool(title)) + int(bool(headers))
        if top:  # before the first row: write-only mode writes the sheet's head with it
            self.ws.freeze_panes = f"A{top + 1}"
            self.ws.print_title_rows = f"1:{top}"
        if title:
            self.ws.append([self._styled(title, _TITLE)])
        if headers:
            self.ws.append([self._styled(h, _BOLD) for h, _ in headers])

    def _print_setup(self) -> None:
        self.ws.page_setup.orientation = "landscape"
        self.ws.page_setup.paperSize = A4
        self.ws.page_setup.fitToWidth = 1
        self.ws.page_setup.fitToHeight = 0
        self.ws.sheet_properties.pageSetUpPr.fitToPage = True

    def _styled(self, value: str, font: Font) -> Any:
        c = WriteOnlyCell(self.ws, value=value)
        c.font = font
        return c

    def append(self, values: Iterable[Any]) -> None:
        """Write one row."""
        self.ws.append([cell(self.ws, v) for v in values])
        self.rows += 1

    def wrapped(self, values: Iterable[Any]) -> None:
        """Write one row whose text wraps (long opinions, commitments)."""
        out = []
        for v in values:
            c = cell(self.ws, v)
            if isinstance(c, str):
                c = WriteOnlyCell(self.ws, value=c)
            if isinstance(c, Cell):
                c.alignment = _WRAP
            out.append(c)
        self.ws.append(out)
        self.rows += 1

    def blank(self) -> None:
        self.ws.append([])


def safe_title(name: str) -> str:
    """A valid sheet name: at most 31 characters, none of `[]:*?/\\`."""
    for ch in "[]:*?/\\":
        name = name.replace(ch, "_")
    return name.strip("'")[:31] or "Sheet"


def unique_title(name: str, taken: set[str]) -> str:
    """A sheet name not in `taken` (case-insensitive, as Excel compares them); records it."""
    base = safe_title(name)
    candidate, n = base, 1
    while candidate.lower() in taken:
        n += 1
        suffix = f"({n})"
        candidate = base[: 31 - len(suffix)] + suffix
    taken.add(candidate.lower())
    return candidate

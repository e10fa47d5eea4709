"""Bounded, streamed reading of uploaded CSV and XLSX files: a header row, then records of text.

Every import (organisations today, member rosters later) reads files through `read_sheet`, with
the same `SheetLimits` for the API, the web pages and the CLI. Limits are checked before the work
they bound: the file size first; for XLSX the zip central directory (entry count, unpacked sizes,
compression ratio, encrypted or odd entries), then the sheet's declared `<dimension>`; then, while
streaming, rows, columns, cells, characters per cell and characters in all. Nothing is read into
memory beyond those bounds: XLSX parts are parsed by expat in 64 KB chunks (no DTDs, no
entities), never by building a tree, and the zip reader never unpacks more than an entry declares.

`TooLarge` (HTTP 413) is a size limit; other problems are `InvalidInput` (HTTP 422), each with a
Chinese message naming the limit and, where there is one, the row and the column.
"""

from __future__ import annotations

import codecs
import csv
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from states.errors import InvalidInput, TooLarge

MIB = 1024 * 1024


@dataclass(frozen=True)
class SheetLimits:
    """What one uploaded file may hold; `from_env` reads `DANGJIAN_IMPORT_MAX_ROWS`."""

    max_bytes: int = 10 * MIB  # the file as uploaded
    max_entries: int = 1000  # XLSX: zip entries
    max_entry_bytes: int = 100 * MIB  # XLSX: one entry, unpacked
    max_unpacked_bytes: int = 200 * MIB  # XLSX: every entry, unpacked
    max_ratio: int = 100  # XLSX: unpacked / packed size of an entry over 1 MiB
    max_rows: int = 200_000  # data rows, the header not counted
    max_cols: int = 256
    max_cells: int = 5_000_000
    max_cell_chars: int = 1000
    max_line_chars: int = 64 * 1024  # CSV: one line
    max_total_chars: int = 40_000_000

    @classmethod
    def from_env(cls) -> SheetLimits:
        """The defaults, with the row limit from `DANGJIAN_IMPORT_MAX_ROWS` when it is set."""
        raw = os.environ.get("DANGJIAN_IMPORT_MAX_ROWS", "").strip()
        return cls(max_rows=int(raw)) if raw.isdecimal() and int(raw) > 0 else cls()


@dataclass
class Sheet:
    """The first non-empty row as the header, then the other non-empty rows, streamed."""

    header: list[str]
    header_row: int
    records: Iterator[tuple[int, list[str]]]


def read_sheet(path: Path, limits: SheetLimits | None = None) -> Sheet:
    """Open a CSV or XLSX file within `limits`; raise `InvalidInput` / `TooLarge` otherwise."""
    limits = limits or SheetLimits.from_env()
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", ".xlsm"):
        raise InvalidInput(
            f"不支持的文件类型：{path.suffix or '（无扩展名）'}，请上传 CSV 或 XLSX 文件",
            details={"field": "file", "file": path.name},
        )
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise TooLarge(
            f"文件过大：{megabytes(size)}，上限 {megabytes(limits.max_bytes)}",
            details={"field": "file", "limit": limits.max_bytes},
        )
    if suffix == ".csv":
        raw = _csv_rows(path, limits)
    else:
        from states.xlsx import xlsx_rows

        raw = xlsx_rows(path, limits)
    records = _Bounds(limits).apply(raw)
    first = next(records, None)
    if first is None:
        raise InvalidInput("文件为空：第 1 行应为表头", details={"field": "file"})
    return Sheet(header=first[1], header_row=first[0], records=records)


def megabytes(size: int) -> str:
    """Return a byte count in MB for messages."""
    return f"{size / MIB:.1f} MB" if size % MIB else f"{size // MIB} MB"


def column_letter(index: int) -> str:
    """Return the spreadsheet letters of a 0-based column index (0 -> A, 26 -> AA)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


# --- text cleaning ---------------------------------------------------------------------------

#: Invisible format characters (Unicode category Cf: bidi overrides and isolates, zero-width
#: characters, the BOM, soft hyphen, …) and the C0/C1 controls other than whitespace.
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_BREAKS = re.compile("[\t\n\x0b\x0c\r\x1c-\x1f\x85\u2028\u2029]+")
#: A cell starting with one of these becomes a formula in a spreadsheet.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def clean_text(text: str) -> str:
    """Drop controls and invisible format characters; line breaks and tabs become one space."""
    return _INVISIBLE.sub("", _BREAKS.sub(" ", text)).strip()


def has_invisible(text: str) -> bool:
    """Whether `text` holds a control or invisible format character."""
    return _INVISIBLE.search(text) is not None or _BREAKS.search(text) is not None


def shown(text: str, limit: int = 60) -> str:
    """Return `text` for a message: invisible characters as \\uXXXX, cut to `limit`."""
    escaped = _INVISIBLE.sub(lambda m: f"\\u{ord(m.group()):04X}", text)
    escaped = _BREAKS.sub(lambda m: "".join(f"\\u{ord(c):04X}" for c in m.group()), escaped)
    return escaped if len(escaped) <= limit else escaped[:limit] + "…"


def formula_prefixed(text: str) -> bool:
    """Whether a spreadsheet would read `text` as a formula."""
    return text.startswith(FORMULA_PREFIXES)


# --- streaming bounds ------------------------------------------------------------------------


class _Bounds:
    """Counts rows, cells and characters as records stream past; drops empty rows."""

    def __init__(self, limits: SheetLimits) -> None:
        self.limits = limits
        self.header: list[str] = []
        self.rows = self.cells = self.chars = 0

    def apply(self, raw: Iterator[tuple[int, list[str]]]) -> Iterator[tuple[int, list[str]]]:
        for num, cells in raw:
            cells = [c.replace("\ufeff", "").strip() for c in cells]
            self._check(num, cells)
            if any(cells):
                if not self.header:
                    self.header = cells
                else:
                    self._count_row(num)
                yield num, cells

    def _count_row(self, num: int) -> None:
        self.rows += 1
        if self.rows > self.limits.max_rows:
            raise InvalidInput(
                f"数据行数超过上限：最多 {self.limits.max_rows:,} 行（第 {num} 行超出）",
                details={"field": "file", "row": num, "limit": self.limits.max_rows},
            )

    def _check(self, num: int, cells: list[str]) -> None:
        limits = self.limits
        if len(cells) > limits.max_cols:
            raise InvalidInput(
                f"第 {num} 行列数过多：{len(cells)} 列，上限 {limits.max_cols} 列",
                details={"field": "file", "row": num, "limit": limits.max_cols},
            )
        self.cells += len(cells)
        if self.cells > limits.max_cells:
            raise InvalidInput(
                f"单元格总数超过上限 {limits.max_cells:,} 个（第 {num} 行超出）",
                details={"field": "file", "row": num, "limit": limits.max_cells},
            )
        for index, cell in enumerate(cells):
            if len(cell) > limits.max_cell_chars:
                raise cell_too_long(num, index, len(cell), limits, self.header)
            self.chars += len(cell)
        if self.chars > limits.max_total_chars:
            raise TooLarge(
                f"文件内容过多：文字总量超过 {limits.max_total_chars:,} 个字符（第 {num} 行超出）",
                details={"field": "file", "row": num, "limit": limits.max_total_chars},
            )


def _column_label(index: int, header: list[str]) -> str:
    name = header[index] if index < len(header) else ""
    return (
        f"{column_letter(index)} 列（{shown(name, 20)}）" if name else f"{column_letter(index)} 列"
    )


def cell_too_long(
    num: int, index: int, length: int | None, limits: SheetLimits, header: list[str] | None = None
) -> InvalidInput:
    size = f"{length:,} 个字符，" if length is not None else ""
    return InvalidInput(
        f"第 {num} 行 {_column_label(index, header or [])} 内容过长：{size}"
        f"上限 {limits.max_cell_chars:,} 个字符",
        details={
            "field": "file",
            "row": num,
            "column": column_letter(index),
            "limit": limits.max_cell_chars,
        },
    )


# --- CSV ---------------------------------------------------------------------------------------


def _csv_rows(path: Path, limits: SheetLimits) -> Iterator[tuple[int, list[str]]]:
    """Decode (UTF-8, else GB18030) and split; lines and fields are capped while reading.

    The file is streamed, never held whole: one pass checks that it decodes (in 1 MB reads),
    so the encoding is decided, or refused, before the first row; the second pass reads lines."""
    encoding = _csv_encoding(path)
    with path.open("r", encoding=encoding, newline="") as handle:
        reader = csv.reader(_csv_lines(handle, limits))
        try:
            yield from enumerate(reader, start=1)
        except csv.Error as exc:
            raise InvalidInput(
                f"CSV 格式有误（第 {reader.line_num} 行附近）：{exc}",
                details={"field": "file", "row": reader.line_num},
            ) from exc


def _csv_encoding(path: Path) -> str:
    """UTF-8 (a BOM allowed) when the whole file decodes as UTF-8, else GB18030, else refused."""
    for encoding in ("utf-8-sig", "gb18030"):
        if _decodes(path, encoding):
            return encoding
    raise InvalidInput("无法识别文件编码，请另存为 UTF-8 编码的 CSV", details={"field": "file"})


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)()
    try:
        with path.open("rb") as handle:
            while block := handle.read(MIB):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _csv_lines(lines: Iterable[str], limits: SheetLimits) -> Iterator[str]:
    for num, line in enumerate(lines, start=1):
        if len(line) > limits.max_line_chars:
            raise InvalidInput(
                f"第 {num} 行过长：{len(line):,} 个字符，上限 {limits.max_line_chars:,}",
                details={"field": "file", "row": num, "limit": limits.max_line_chars},
            )
        yield line

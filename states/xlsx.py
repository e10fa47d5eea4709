"""The XLSX half of `states.sheets`: a bounded, streamed reader of a workbook's first sheet.

Before unpacking anything it checks the zip central directory (entry count, each entry's and the
total unpacked size, compression ratio, encrypted, oddly named or oddly compressed entries);
Python's zip reader never yields more than an entry declares, so those sizes bound everything
after. Parts are parsed by expat in 64 KB chunks with DTDs refused (no entity can expand), never
built into a tree: the shared strings under the cell and total-character limits, the styles (to
show date cells as dates), then the sheet, whose declared `<dimension>` is checked before its
first row, and whose rows, columns, cells and cell lengths are checked as they stream.
"""

from __future__ import annotations

import posixpath
import re
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.parsers import expat

from states.errors import InvalidInput
from states.sheets import SheetLimits, TooLarge, cell_too_long, column_letter, megabytes, shown

_CHUNK = 64 * 1024
_RATIO_FLOOR = 1024 * 1024  # entries smaller than this are never too compressed

_REL_TYPES = ("officeDocument", "sharedStrings", "styles")


def xlsx_rows(path: Path, limits: SheetLimits) -> Iterator[tuple[int, list[str]]]:
    """Check the zip directory, read the shared strings and styles, then stream the first sheet."""
    try:
        with zipfile.ZipFile(path) as book:
            _check_directory(book, limits)
            parts = _Parts(book, limits)
            sheet = _SheetParser(parts.strings(), parts.date_styles(), limits)
            yield from sheet.rows(parts.stream(parts.first_sheet()))
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        NotImplementedError,
        RuntimeError,
        ValueError,
    ) as exc:
        raise _unreadable(f"文件已损坏或不是标准的 .xlsx（{type(exc).__name__}）") from exc
    except OSError as exc:
        raise _unreadable("文件无法打开") from exc


def _unreadable(reason: str) -> InvalidInput:
    return InvalidInput(
        f"无法读取 Excel 文件，请确认是 .xlsx 格式：{reason}", details={"field": "file"}
    )


def _check_directory(book: zipfile.ZipFile, limits: SheetLimits) -> None:
    """Refuse a zip whose directory declares too much, before unpacking any of it."""
    infos = book.infolist()
    if len(infos) > limits.max_entries:
        raise TooLarge(
            f"Excel 文件结构异常：含 {len(infos):,} 个内部文件，上限 {limits.max_entries:,}",
            details={"field": "file", "limit": limits.max_entries},
        )
    names: set[str] = set()
    total = 0
    for info in infos:
        _check_entry(info, names, limits)
        total += info.file_size
    if total > limits.max_unpacked_bytes:
        raise TooLarge(
            f"Excel 文件解压后过大：{megabytes(total)}，上限 {megabytes(limits.max_unpacked_bytes)}",
            details={"field": "file", "limit": limits.max_unpacked_bytes},
        )


def _check_entry(info: zipfile.ZipInfo, names: set[str], limits: SheetLimits) -> None:
    name = info.filename
    if name in names or name.startswith("/") or ".." in name.split("/"):
        raise _unreadable(f"内部文件名异常：{shown(name)}")
    names.add(name)
    if info.flag_bits & 0x1:
        raise _unreadable("文件已加密，请先取消密码保护")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _unreadable(f"不支持的压缩方式（{info.compress_type}）")
    if info.file_size > limits.max_entry_bytes:
        raise TooLarge(
            f"Excel 文件中的 {shown(name)} 解压后 {megabytes(info.file_size)}，"
            f"超过单个部件上限 {megabytes(limits.max_entry_bytes)}",
            details={"field": "file", "entry": name, "limit": limits.max_entry_bytes},
        )
    packed = max(info.compress_size, 1)
    if info.file_size > _RATIO_FLOOR and info.file_size > packed * limits.max_ratio:
        raise TooLarge(
            f"Excel 文件中的 {shown(name)} 压缩比异常（{info.file_size // packed:,} 倍，"
            f"上限 {limits.max_ratio} 倍），疑似压缩炸弹",
            details={"field": "file", "entry": name, "limit": limits.max_ratio},
        )


class _Stop(Exception):
    """Raised by a handler to end a scan early."""


def _parse(stream: Iterator[bytes], parser: Any, part: str) -> None:
    """Feed `stream` to an expat parser; DTDs are refused, so no entity can expand."""
    parser.StartDoctypeDeclHandler = _no_doctype
    parser.EntityDeclHandler = _no_doctype
    try:
        for chunk in stream:
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except _Stop:
        return
    except expat.ExpatError as exc:
        raise _unreadable(f"{part} 不是有效的 XML（{exc}）") from exc


def _no_doctype(*_: Any) -> None:
    raise _unreadable("内部文件含 DTD 声明")


def _expat(
    start: Callable[[str, dict[str, str]], None],
    end: Callable[[str], None] | None = None,
    chars: Callable[[str], None] | None = None,
) -> Any:
    """An expat parser calling `start(local_name, attrs)`, `end(local_name)` and `chars`."""
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.buffer_text = True
    parser.StartElementHandler = lambda name, attrs: start(name.rpartition(" ")[2], attrs)
    if end is not None:
        parser.EndElementHandler = lambda name: end(name.rpartition(" ")[2])
    if chars is not None:
        parser.CharacterDataHandler = chars
    return parser


class _Parts:
    """The parts of a workbook the reader needs, found through the package relationships."""

    def __init__(self, book: zipfile.ZipFile, limits: SheetLimits) -> None:
        self.book = book
        self.limits = limits
        self.names = set(book.namelist())
        root = self._rels("_rels/.rels", "")
        self.workbook = root.get("officeDocument", "xl/workbook.xml")
        if self.workbook not in self.names:
            raise _unreadable("缺少工作簿（workbook.xml）")
        folder, base = posixpath.split(self.workbook)
        self.related = self._rels(f"{folder}/_rels/{base}.rels", folder)

    def stream(self, name: str) -> Iterator[bytes]:
        with self.book.open(name) as handle:
            while chunk := handle.read(_CHUNK):
                yield chunk

    def _rels(self, name: str, folder: str) -> dict[str, str]:
        """Return {relationship type's last word or Id: target part} of a .rels part."""
        found: dict[str, str] = {}
        if name not in self.names:
            return found

        def start(tag: str, attrs: dict[str, str]) -> None:
            if tag != "Relationship" or attrs.get("TargetMode") == "External":
                return
            target = attrs.get("Target", "")
            path = target[1:] if target.startswith("/") else posixpath.join(folder, target)
            path = posixpath.normpath(path)
            kind = attrs.get("Type", "").rpartition("/")[2]
            if kind in _REL_TYPES:
                found.setdefault(kind, path)
            found[f"id:{attrs.get('Id', '')}"] = path

        _parse(self.stream(name), _expat(start), name)
        return found

    def first_sheet(self) -> str:
        """Return the part of the workbook's first sheet (the one Excel opens first)."""
        rid: list[str] = []

        def start(tag: str, attrs: dict[str, str]) -> None:
            if tag == "sheet":
                rid.extend(v for k, v in attrs.items() if k.endswith(" id"))
                raise _Stop

        _parse(self.stream(self.workbook), _expat(start), self.workbook)
        part = self.related.get(f"id:{rid[0]}") if rid else None
        if part is None or part not in self.names:
            raise _unreadable("找不到第一张工作表")
        return part

    def strings(self) -> list[str]:
        """Read the shared strings, each within the cell limit, all within the total."""
        part = self.related.get("sharedStrings")
        if part is None or part not in self.names:
            return []
        reader = _SharedStrings(self.limits)
        _parse(self.stream(part), reader.parser(), part)
        return reader.items

    def date_styles(self) -> frozenset[int]:
        """Return the cell style indices whose number format shows a date or time."""
        part = self.related.get("styles")
        if part is None or part not in self.names:
            return frozenset()
        reader = _Styles()
        _parse(self.stream(part), reader.parser(), part)
        return reader.date_styles()


class _SharedStrings:
    """Collects `<si>` texts (runs joined, phonetic hints skipped) under the limits."""

    def __init__(self, limits: SheetLimits) -> None:
        self.limits = limits
        self.items: list[str] = []
        self.buf: list[str] = []
        self.size = self.total = 0
        self.in_t = False
        self.phonetic = 0

    def parser(self) -> Any:
        return _expat(self.start, self.end, self.chars)

    def start(self, tag: str, _: dict[str, str]) -> None:
        if tag == "t" and not self.phonetic:
            self.in_t = True
        elif tag == "rPh":
            self.phonetic += 1
        elif tag == "si":
            self.buf, self.size = [], 0

    def end(self, tag: str) -> None:
        if tag == "t":
            self.in_t = False
        elif tag == "rPh":
            self.phonetic -= 1
        elif tag == "si":
            self.items.append("".join(self.buf))
            if len(self.items) > self.limits.max_cells:
                raise TooLarge(
                    f"Excel 共享字符串表过大：超过 {self.limits.max_cells:,} 条",
                    details={"field": "file", "limit": self.limits.max_cells},
                )

    def chars(self, data: str) -> None:
        if not self.in_t:
            return
        self.size += len(data)
        self.total += len(data)
        if self.size > self.limits.max_cell_chars:
            raise InvalidInput(
                f"Excel 共享字符串表中第 {len(self.items) + 1:,} 条文字过长：超过上限 "
                f"{self.limits.max_cell_chars:,} 个字符",
                details={"field": "file", "limit": self.limits.max_cell_chars},
            )
        if self.total > self.limits.max_total_chars:
            raise TooLarge(
                f"Excel 共享字符串表过大：文字总量超过 {self.limits.max_total_chars:,} 个字符",
                details={"field": "file", "limit": self.limits.max_total_chars},
            )
        self.buf.append(data)


class _Styles:
    """Reads number formats and cell styles to tell which styles show dates."""

    MAX_STYLES = 100_000

    def __init__(self) -> None:
        self.formats: dict[int, str] = {}
        self.xf_formats: list[int] = []
        self.in_xfs = False

    def parser(self) -> Any:
        return _expat(self.start, self.end)

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "numFmt" and len(attrs.get("formatCode", "")) <= 255:
            self.formats[_int(attrs.get("numFmtId"))] = attrs.get("formatCode", "")
        elif tag == "cellXfs":
            self.in_xfs = True
        elif tag == "xf" and self.in_xfs and len(self.xf_formats) < self.MAX_STYLES:
            self.xf_formats.append(_int(attrs.get("numFmtId")))

    def end(self, tag: str) -> None:
        if tag == "cellXfs":
            self.in_xfs = False

    def date_styles(self) -> frozenset[int]:
        from openpyxl.styles.numbers import BUILTIN_FORMATS, is_date_format

        def is_date(fmt_id: int) -> bool:
            fmt = self.formats.get(fmt_id, BUILTIN_FORMATS.get(fmt_id))
            return bool(fmt) and is_date_format(fmt)

        return frozenset(i for i, fmt_id in enumerate(self.xf_formats) if is_date(fmt_id))


def _int(text: str | None, default: int = -1) -> int:
    return int(text) if text and text.isdecimal() and len(text) < 10 else default


_CELL_REF = re.compile(r"([A-Z]{1,3})(\d{1,7})\Z")


def _column_index(ref: str | None) -> int | None:
    """Return the 0-based column of a cell reference such as `C12` (None when absent/odd)."""
    match = _CELL_REF.match(ref or "")
    if match is None:
        return None
    index = 0
    for letter in match.group(1):
        index = index * 26 + ord(letter) - 64
    return index - 1


@dataclass
class _Cell:
    column: int
    kind: str
    style: int
    text: list[str] = field(default_factory=list)
    size: int = 0


class _SheetParser:
    """Streams `<row>`s of a worksheet as lists of text, checking limits before storing."""

    def __init__(self, strings: list[str], dates: frozenset[int], limits: SheetLimits) -> None:
        self.strings = strings
        self.dates = dates
        self.limits = limits
        self.done: list[tuple[int, list[str]]] = []
        self.row_num = 0
        self.row_count = 0
        self.cell_count = 0
        self.next_col = 0
        self.cells: dict[int, str] = {}
        self.cell: _Cell | None = None
        self.collect = False
        self.phonetic = False

    def rows(self, stream: Iterator[bytes]) -> Iterator[tuple[int, list[str]]]:
        parser = _expat(self.start, self.end, self.chars)
        parser.StartDoctypeDeclHandler = _no_doctype
        parser.EntityDeclHandler = _no_doctype
        try:
            for chunk in stream:
                parser.Parse(chunk, False)
                yield from self._drain()
            parser.Parse(b"", True)
        except expat.ExpatError as exc:
            raise _unreadable(f"工作表不是有效的 XML（{exc}）") from exc
        yield from self._drain()

    def _drain(self) -> list[tuple[int, list[str]]]:
        done, self.done = self.done, []
        return done

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if tag == "c":
            self._start_cell(attrs)
        elif tag == "row":
            self._start_row(attrs)
        elif tag in ("v", "t") and self.cell is not None and not self.phonetic:
            self.collect = True
        elif tag == "rPh":
            self.phonetic = True
        elif tag == "dimension":
            self._check_dimension(attrs.get("ref", ""))

    def end(self, tag: str) -> None:
        if tag in ("v", "t"):
            self.collect = False
        elif tag == "rPh":
            self.phonetic = False
        elif tag == "c" and self.cell is not None:
            self.cells[self.cell.column] = self._value(self.cell)
            self.cell = None
        elif tag == "row":
            width = max(self.cells) + 1 if self.cells else 0
            self.done.append((self.row_num, [self.cells.get(i, "") for i in range(width)]))
            self.cells = {}

    def chars(self, data: str) -> None:
        cell = self.cell
        if not self.collect or cell is None:
            return
        cell.size += len(data)
        if cell.size > self.limits.max_cell_chars:
            raise cell_too_long(self.row_num, cell.column, None, self.limits)
        cell.text.append(data)

    def _start_row(self, attrs: dict[str, str]) -> None:
        self.row_count += 1
        number = _int(attrs.get("r"))
        self.row_num = number if number > 0 else self.row_num + 1
        if self.row_count > self.limits.max_rows + 1:
            raise InvalidInput(
                f"数据行数超过上限：最多 {self.limits.max_rows:,} 行（第 {self.row_num} 行超出）",
                details={"field": "file", "row": self.row_num, "limit": self.limits.max_rows},
            )
        self.cells = {}
        self.next_col = 0

    def _start_cell(self, attrs: dict[str, str]) -> None:
        column = _column_index(attrs.get("r"))
        column = self.next_col if column is None else column
        self.next_col = column + 1
        self.cell_count += 1
        if self.cell_count > self.limits.max_cells:
            raise InvalidInput(
                f"单元格总数超过上限 {self.limits.max_cells:,} 个（第 {self.row_num} 行超出）",
                details={"field": "file", "row": self.row_num, "limit": self.limits.max_cells},
            )
        if column >= self.limits.max_cols:
            raise InvalidInput(
                f"第 {self.row_num} 行列数过多：用到第 {column + 1:,} 列（{column_letter(column)}），"
                f"上限 {self.limits.max_cols} 列",
                details={"field": "file", "row": self.row_num, "limit": self.limits.max_cols},
            )
        self.cells.setdefault(column, "")
        self.cell = _Cell(column, attrs.get("t", "n"), _int(attrs.get("s"), 0))

    def _check_dimension(self, ref: str) -> None:
        """Refuse a sheet whose declared extent is over the limits, before reading a row."""
        last = ref.rpartition(":")[2]
        match = _CELL_REF.match(last)
        if match is None:
            return
        rows, cols = int(match.group(2)), (_column_index(last) or 0) + 1
        limits = self.limits
        if rows > limits.max_rows + 1 or rows * cols > limits.max_cells:
            raise InvalidInput(
                f"工作表声明的范围 {shown(ref, 30)} 共 {rows:,} 行 × {cols:,} 列，超过上限"
                f"（最多 {limits.max_rows:,} 行数据、{limits.max_cells:,} 个单元格）",
                details={"field": "file", "row": rows, "limit": limits.max_rows},
            )
        if cols > limits.max_cols:
            raise InvalidInput(
                f"工作表声明的范围 {shown(ref, 30)} 共 {cols:,} 列，上限 {limits.max_cols} 列",
                details={"field": "file", "limit": limits.max_cols},
            )

    def _value(self, cell: _Cell) -> str:
        text = "".join(cell.text)
        if cell.kind == "s":
            index = _int(text.strip())
            if not 0 <= index < len(self.strings):
                raise _unreadable(f"第 {self.row_num} 行引用了不存在的共享字符串")
            return self.strings[index]
        if cell.kind == "b":
            return "TRUE" if text.strip() == "1" else "FALSE"
        if cell.kind != "n" or not text.strip():
            return text
        return _number(text, cell.style in self.dates)


def _number(text: str, is_date: bool) -> str:
    """Show a numeric cell as Excel would in a plain cell: whole numbers without `.0`."""
    try:
        number = float(text)
    except ValueError:
        return text
    if is_date:
        try:
            from openpyxl.utils.datetime import from_excel

            moment = from_excel(number)
        except (ValueError, OverflowError, TypeError):
            moment = None
        if moment is not None:
            stamp = moment.isoformat()
            return stamp.removesuffix("T00:00:00")
    if number.is_integer():
        return str(int(number))
    return repr(number)

"""What a file is, from its bytes: the name and the client's content type are never trusted.

Accepted: JPEG, PNG, GIF, WebP, PDF; DOCX, XLSX and PPTX, recognised from the zip's central
directory (read without extracting anything, with limits on entries and unpacked size so a zip
bomb is refused, and no macros); legacy DOC, XLS and PPT (the OLE2 header; the kind from the
bytes when they say it, else from a .doc/.xls/.ppt name). Everything else, an `.exe` renamed
`.jpg`, HTML, SVG or a plain zip, is refused with the file's name.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePath

import filetype

from states.errors import InvalidInput

HEAD = 8192
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
ZIP = b"PK\x03\x04"
MAX_ENTRIES = 2000
MAX_UNPACKED = 200 * 1024 * 1024
MAX_RATIO = 100
RATIO_FLOOR = 1024 * 1024  # entries smaller than this are never "too compressed"
ALLOWED = "图片（JPEG、PNG、GIF、WebP）、PDF、Word、Excel 或 PowerPoint 文件"


@dataclass(frozen=True)
class FileType:
    """A sniffed type: its MIME type, its usual extension and a Chinese label."""

    mime: str
    ext: str
    label: str

    @property
    def is_image(self) -> bool:
        return self.mime.startswith("image/")


def _t(mime: str, ext: str, label: str) -> FileType:
    return FileType(mime, ext, label)


_OOXML = "application/vnd.openxmlformats-officedocument."
JPEG = _t("image/jpeg", "jpg", "图片")
PNG = _t("image/png", "png", "图片")
GIF = _t("image/gif", "gif", "图片")
WEBP = _t("image/webp", "webp", "图片")
PDF = _t("application/pdf", "pdf", "PDF")
DOCX = _t(_OOXML + "wordprocessingml.document", "docx", "Word")
XLSX = _t(_OOXML + "spreadsheetml.sheet", "xlsx", "Excel")
PPTX = _t(_OOXML + "presentationml.presentation", "pptx", "PowerPoint")
DOC = _t("application/msword", "doc", "Word")
XLS = _t("application/vnd.ms-excel", "xls", "Excel")
PPT = _t("application/vnd.ms-powerpoint", "ppt", "PowerPoint")

_BY_MIME = {t.mime: t for t in (JPEG, PNG, GIF, WEBP, PDF, DOC, XLS, PPT)}
#: The part every OOXML package of each kind has.
_MAIN_PART = {"word/document.xml": DOCX, "xl/workbook.xml": XLSX, "ppt/presentation.xml": PPTX}
#: Extensions that may stand for each type (a name with another one gets the right one added).
EXTENSIONS = {
    JPEG: {"jpg", "jpeg", "jpe", "jfif"},
    DOC: {"doc", "wps"},
    XLS: {"xls", "et"},
    PPT: {"ppt", "dps"},
}


def refuse(filename: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"文件「{filename}」{why}，只接受{ALLOWED}",
        details=[{"field": "file", "filename": filename}],
    )


def sniff(path: Path, filename: str) -> FileType:
    """Return the type of the file at `path` from its bytes; InvalidInput naming `filename`."""
    with path.open("rb") as f:
        head = f.read(HEAD)
    if head.startswith(ZIP):
        return _office_open_xml(path, filename)
    if head.startswith(OLE2):
        return _legacy_office(head, filename)
    kind = filetype.guess(head)
    found = _BY_MIME.get(kind.mime) if kind is not None else None
    if found is None or found in (DOC, XLS, PPT):
        raise refuse(filename, "的内容不是可接受的类型")
    return found


def _office_open_xml(path: Path, filename: str) -> FileType:
    """DOCX/XLSX/PPTX from the central directory alone; bombs, macros and other zips refused."""
    try:
        with zipfile.ZipFile(path) as book:
            infos = book.infolist()[: MAX_ENTRIES + 1]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise refuse(filename, "是损坏的压缩文件") from None
    if len(infos) > MAX_ENTRIES:
        raise refuse(filename, f"包含的部件超过 {MAX_ENTRIES} 个")
    unpacked = 0
    for info in infos:
        unpacked += info.file_size
        big = info.file_size > RATIO_FLOOR
        if big and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise refuse(filename, f"的部件 {info.filename[:80]} 压缩比异常（疑似压缩炸弹）")
    if unpacked > MAX_UNPACKED:
        raise refuse(filename, f"解压后超过 {MAX_UNPACKED // (1024 * 1024)} MB（疑似压缩炸弹）")
    names = {info.filename for info in infos}
    if any(n.lower().endswith("vbaproject.bin") for n in names):
        raise refuse(filename, "含有宏")
    kinds = [t for part, t in _MAIN_PART.items() if part in names]
    if "[Content_Types].xml" not in names or len(kinds) != 1:
        raise refuse(filename, "是压缩文件，不是 Word、Excel 或 PowerPoint 文档")
    return kinds[0]


def _legacy_office(head: bytes, filename: str) -> FileType:
    """An OLE2 compound file: DOC, XLS or PPT (the bytes decide when they can; else the name)."""
    kind = filetype.guess(head)
    found = _BY_MIME.get(kind.mime) if kind is not None else None
    if found in (DOC, XLS, PPT):
        return found
    ext = PurePath(filename).suffix.lower().lstrip(".")
    for legacy in (DOC, XLS, PPT):
        if ext in EXTENSIONS[legacy]:
            return legacy
    raise refuse(filename, "是 OLE 复合文件，但不是 .doc、.xls 或 .ppt 文档")


def safe_filename(filename: str, found: FileType) -> str:
    """The name to keep: no path, no control characters, at most 120 characters, and an
    extension that matches the sniffed type (added when the given one does not)."""
    name = PurePath(filename.replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable() and c not in '"<>|:*?')
    name = name.strip(" .") or "附件"
    stem, dot, ext = name.rpartition(".")
    if not dot or ext.lower() not in EXTENSIONS.get(found, {found.ext}):
        stem, ext = name, found.ext
    return f"{stem[:110]}.{ext[:10]}"

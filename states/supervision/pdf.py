"""PDFs of a weekly 简报 and of a 通报 (A4, Chinese font), with the 简报's charts drawn with
fpdf2's own primitives (rectangles and text), so no browser or image library is needed.

The charts are those of the printable page: the share of units done (a progress bar with the
overdue and waiting shares beside it) and the units per stage (horizontal bars).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from threading import Lock
from typing import Any

from fpdf import FPDF, FontFace

from states.models import Bulletin, Organisation
from states.supervision.models import Circular, CircularItem
from states.survey.cards import load_cjk_font
from states.timeutil import format_local

PAGE_W = 210.0
MARGIN = 18.0
WIDTH = PAGE_W - 2 * MARGIN
RED = (178, 34, 34)
GREY = (200, 200, 200)
BAR = (196, 43, 28)
SOFT = (233, 150, 122)


class _Doc(FPDF):
    """An A4 page with a CJK font, or Helvetica with a note when none is installed."""

    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.set_margins(MARGIN, MARGIN, MARGIN)
        self.set_auto_page_break(True, margin=MARGIN)
        self.cjk = load_cjk_font(self, 11)
        self.set_title(title)
        self.add_page()

    def t(self, text: Any) -> str:
        text = str(text)
        return text if self.cjk else text.encode("latin-1", "replace").decode("latin-1")

    def heading(self, text: str, size: int = 20) -> None:
        self.set_text_color(*RED)
        self.set_font_size(size)
        self.multi_cell(WIDTH, size * 0.5, self.t(text), align="C")
        self.set_text_color(0, 0, 0)
        self.ln(2)

    def rule(self) -> None:
        self.set_draw_color(*RED)
        self.set_line_width(0.6)
        self.line(MARGIN, self.get_y(), PAGE_W - MARGIN, self.get_y())
        self.ln(4)

    def para(self, text: str, size: int = 11, *, muted: bool = False) -> None:
        self.set_font_size(size)
        if muted:
            self.set_text_color(100, 100, 100)
        self.multi_cell(WIDTH, size * 0.55, self.t(text))
        self.set_text_color(0, 0, 0)
        self.ln(1.5)

    def subheading(self, text: str) -> None:
        self.ln(2)
        self.set_font_size(13)
        self.set_text_color(*RED)
        self.cell(WIDTH, 8, self.t(text), new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)

    def progress(self, label: str, share: float, colour: tuple[int, int, int]) -> None:
        """A horizontal bar of `share` (0–100) of the full width, with its label."""
        self.set_font_size(10)
        y = self.get_y()
        self.cell(34, 7, self.t(label))
        x, w = MARGIN + 34, WIDTH - 34 - 18
        self.set_fill_color(*GREY)
        self.rect(x, y + 1.5, w, 4, style="F")
        self.set_fill_color(*colour)
        self.rect(x, y + 1.5, w * max(0.0, min(share, 100.0)) / 100, 4, style="F")
        self.set_xy(x + w + 2, y)
        self.cell(16, 7, f"{share:.1f}%", new_x="LMARGIN", new_y="NEXT")

    def bars(self, rows: Sequence[tuple[str, int]]) -> None:
        """Units per stage: one bar a row, scaled to the largest."""
        top = max([n for _l, n in rows] + [1])
        self.set_font_size(10)
        for label, n in rows:
            y = self.get_y()
            self.cell(40, 7, self.t(label))
            x, w = MARGIN + 40, WIDTH - 40 - 18
            self.set_fill_color(*BAR)
            if n:
                self.rect(x, y + 1.5, max(0.8, w * n / top), 4, style="F")
            self.set_xy(x + w + 2, y)
            self.cell(16, 7, str(n), new_x="LMARGIN", new_y="NEXT")

    def pairs(self, head: tuple[str, str], rows: Sequence[tuple[str, str]]) -> None:
        self.set_font_size(10)
        with super().table(
            col_widths=(40, 80), text_align="LEFT", headings_style=FontFace(emphasis=None)
        ) as table:
            row = table.row()
            for cell in head:
                row.cell(self.t(cell))
            for a, b in rows:
                row = table.row()
                row.cell(self.t(a))
                row.cell(self.t(b))

    def done(self) -> bytes:
        if not self.cjk:
            self.para("(No Chinese font installed: install fonts-wqy-microhei.)", 8, muted=True)
        return bytes(self.output())


def bulletin_pdf(bulletin: Bulletin, org: Organisation) -> bytes:
    """The 简报 as an A4 PDF: summary, the two charts, the 通报 list and work owed above."""
    d = bulletin.data or {}
    doc = _Doc(f"简报：{d.get('campaign', '')}")
    doc.heading("简  报")
    doc.para(f"{d.get('campaign', '')} · {d.get('period', bulletin.period)}", 12)
    doc.para(f"{d.get('org_name') or org.name}    截至 {format_local(bulletin.as_of)}", muted=True)
    doc.rule()
    total = int(d.get("total") or 0)
    doc.para(
        f"共 {total} 个单位，已完成 {d.get('done', 0)} 个（{d.get('percent_done', 0)}%），"
        f"逾期 {d.get('overdue', 0)} 个，待审批 {d.get('waiting', 0)} 个。"
    )
    doc.subheading("完成情况")

    def share(n: Any) -> float:
        return 100.0 * int(n or 0) / total if total else 0.0

    doc.progress("已完成", float(d.get("percent_done") or 0), BAR)
    doc.progress("逾期", share(d.get("overdue")), SOFT)
    doc.progress("待审批", share(d.get("waiting")), GREY)
    stages = [(str(s.get("name", "")), int(s.get("runs") or 0)) for s in d.get("stages") or []]
    if stages:
        doc.subheading("各阶段单位数")
        doc.bars(stages)
    doc.subheading("通报名单")
    notice = d.get("notice_list") or []
    doc.para("、".join(map(str, notice)) if notice else "本期没有需要通报的单位。")
    if d.get("owed_list"):
        doc.subheading("待上级完成")
        doc.para(f"逾期 {d.get('overdue_above', 0)} 个，不计入支部：" + "；".join(d["owed_list"]))
    return doc.done()


def circular_pdf(
    circular: Circular, org: Organisation, items: Sequence[tuple[CircularItem, Organisation]]
) -> bytes:
    """The 通报 as an A4 PDF: title, issuer, text, and the organisations named with reasons."""
    doc = _Doc(circular.title)
    doc.heading("通  报")
    doc.para(circular.title, 14)
    doc.para(f"{org.name}    {format_local(circular.created_at)}", muted=True)
    doc.rule()
    doc.para(circular.text)
    doc.subheading(f"通报单位（{len(items)} 个）")
    doc.pairs(("单位", "事由"), [(o.name, i.reason) for i, o in items])
    return doc.done()


#: Stored 简报 and 通报 never change, so their PDFs are kept (loading the font takes seconds).
_KEPT: OrderedDict[tuple[str, int, str], bytes] = OrderedDict()
_KEEP = 64
_LOCK = Lock()


def kept(kind: str, item: Bulletin | Circular, build: Callable[[], bytes]) -> bytes:
    """The PDF of a stored 简报 or 通报, built once and kept for the next downloads (keyed by
    its id and creation instant, so another database's row of the same id is not mistaken)."""
    key = (kind, item.id or 0, item.created_at.isoformat())
    with _LOCK:
        found = _KEPT.get(key)
        if found is not None:
            _KEPT.move_to_end(key)
            return found
    data = build()
    with _LOCK:
        _KEPT[key] = data
        while len(_KEPT) > _KEEP:
            _KEPT.popitem(last=False)
    return data

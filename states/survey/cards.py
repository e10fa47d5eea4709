"""Printable QR cards of a survey's one-time codes: inline SVG for the HTML print page, and a PDF
(A4, 3 × 4 cards a page) for printing elsewhere.

Each card's QR code opens the survey with its code filled in (`/s/<token>?code=…`); the code is
also printed for typing. The PDF writes Chinese with a CJK font when one is installed
(`CJK_FONTS`); without one it still prints every code and QR code, with English labels and a
note saying so, rather than failing.
"""

from __future__ import annotations

import io
from pathlib import Path
from urllib.parse import quote

import segno
from fpdf import FPDF

CJK_FONTS = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
)
COLUMNS, ROWS = 3, 4
CARD_W, CARD_H = 63.0, 68.0
MARGIN_X, MARGIN_Y = 10.5, 12.0
QR_MM = 34.0


def card_url(form_url: str, code: str) -> str:
    """The address a card's QR code opens: the form with the code filled in."""
    return f"{form_url}?code={quote(code)}"


def qr_svg(url: str) -> str:
    """An inline SVG of the QR code of `url` (no external asset, scales when printed)."""
    return str(
        segno.make(url, error="m", micro=False, mask=0).svg_inline(scale=3, border=2, omitsize=True)
    )


def _qr_png(url: str) -> io.BytesIO:
    out = io.BytesIO()
    segno.make(url, error="m", micro=False, mask=0).save(out, kind="png", scale=4, border=2)
    out.seek(0)
    return out


def load_cjk_font(pdf: FPDF, size: int) -> bool:
    """Set the first CJK font of `CJK_FONTS` that loads (True), else Helvetica (False)."""
    for path in CJK_FONTS:
        if path.exists():
            try:
                pdf.add_font("cjk", fname=str(path))
            except Exception:  # a font that will not load: try the next one
                continue
            pdf.set_font("cjk", size=size)
            return True
    pdf.set_font("helvetica", size=size)
    return False


def _card(pdf: FPDF, x: float, y: float, *, title: str, url: str, code: str, cjk: bool) -> None:
    pdf.set_draw_color(160, 160, 160)
    pdf.set_line_width(0.2)
    pdf.set_dash_pattern(dash=1.5, gap=1.5)
    pdf.rect(x, y, CARD_W, CARD_H)
    pdf.set_dash_pattern()
    pdf.set_xy(x + 2, y + 3)
    pdf.set_font_size(10)
    pdf.multi_cell(CARD_W - 4, 5, title if cjk else "Public appraisal card", align="C")
    pdf.image(_qr_png(url), x=x + (CARD_W - QR_MM) / 2, y=y + 14, w=QR_MM, h=QR_MM)
    pdf.set_xy(x + 2, y + 50)
    pdf.set_font_size(13)
    pdf.cell(CARD_W - 4, 7, code, align="C")
    pdf.set_xy(x + 2, y + 58)
    pdf.set_font_size(7)
    note = (
        "扫码或打开问卷输入编码 · 每张卡评议一次"
        if cjk
        else "Scan, or open the form and type the code."
    )
    pdf.cell(CARD_W - 4, 5, note, align="C")


def cards_pdf(*, title: str, form_url: str, codes: list[str]) -> bytes:
    """The PDF of the cards of `codes` (A4, 12 a page)."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    cjk = load_cjk_font(pdf, 10)
    per_page = COLUMNS * ROWS
    for i, code in enumerate(codes):
        if i % per_page == 0:
            pdf.add_page()
            if not cjk:
                pdf.set_xy(MARGIN_X, 4)
                pdf.set_font_size(7)
                pdf.cell(0, 5, "No Chinese font installed (fonts-wqy-microhei): labels in English.")
        row, column = divmod(i % per_page, COLUMNS)
        x, y = MARGIN_X + column * CARD_W, MARGIN_Y + row * CARD_H
        _card(pdf, x, y, title=title, url=card_url(form_url, code), code=code, cjk=cjk)
    return bytes(pdf.output())

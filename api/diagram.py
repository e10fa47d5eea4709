"""The template's state diagram as SVG, drawn here (no JavaScript, no external tools).

Stages stand in a row left to right, then 完成; solid arrows are advances (审批通过), dashed
arcs below are returns (退回). With `counts`, each stage shows how many runs stand in it.
"""

from __future__ import annotations

from html import escape

from states.catalog import DONE, DONE_LABEL, Template

FONT = "system-ui, -apple-system, 'PingFang SC', 'Microsoft YaHei', 'Noto Sans CJK SC', sans-serif"


def _text_width(text: str, size: int) -> int:
    return sum(size if ord(ch) > 0x2E80 else size * 0.6 for ch in text).__int__()


def template_svg(
    tpl: Template, *, counts: dict[str, int] | None = None, current: str | None = None
) -> str:
    """Return a standalone SVG document of the template's stages and transitions."""
    names = [(s.id, s.name) for s in tpl.stages] + [(DONE, DONE_LABEL)]
    size = 14
    box_w = max(96, max(_text_width(n, size) for _, n in names) + 28)
    box_h = 56 if counts is not None else 40
    gap = 44
    pad = 16
    top = 34
    width = pad * 2 + len(names) * box_w + (len(names) - 1) * gap
    height = top + box_h + 74
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" '
        f'aria-label="{escape(tpl.name)} 阶段流程图" font-family="{escape(FONT)}">',
        f"<title>{escape(tpl.name)}（第 {tpl.version} 版）</title>",
        "<defs>"
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#8c1c13"/></marker>'
        '<marker id="back" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
        'markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#7a7a7a"/></marker>'
        "</defs>",
        f'<text x="{pad}" y="20" font-size="13" fill="#555">{escape(tpl.name)} · '
        "实线：审批通过后推进　虚线：退回到此前阶段</text>",
    ]
    xs = [pad + i * (box_w + gap) for i in range(len(names))]
    for i, (sid, name) in enumerate(names):
        x = xs[i]
        is_done = sid == DONE
        is_current = sid == current
        fill = "#fdecea" if is_current else ("#eef6ee" if is_done else "#ffffff")
        stroke = "#8c1c13" if (is_current or not is_done) else "#2e7d32"
        width_px = 3 if is_current else 1.5
        out.append(
            f'<g class="stage" data-stage="{escape(sid)}">'
            f'<rect x="{x}" y="{top}" width="{box_w}" height="{box_h}" rx="8" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="{width_px}"/>'
            f'<text x="{x + box_w / 2}" y="{top + 25}" font-size="{size}" '
            f'text-anchor="middle" fill="#222">{escape(name)}</text>'
        )
        if counts is not None:
            n = counts.get(sid, 0)
            out.append(
                f'<text x="{x + box_w / 2}" y="{top + 45}" font-size="12" '
                f'text-anchor="middle" fill="#8c1c13" class="count">{n} 个单位</text>'
            )
        out.append("</g>")
        if i + 1 < len(names):
            x1, x2, y = x + box_w, xs[i + 1], top + box_h / 2
            out.append(
                f'<line x1="{x1}" y1="{y}" x2="{x2 - 2}" y2="{y}" stroke="#8c1c13" '
                'stroke-width="1.5" marker-end="url(#arrow)"/>'
            )
    # One dashed arc back from each stage to the stage before it (returns may go further).
    for i in range(1, len(names) - 1):
        x_from = xs[i] + box_w / 2
        x_to = xs[i - 1] + box_w / 2
        y0 = top + box_h
        out.append(
            f'<path d="M{x_from},{y0} C{x_from},{y0 + 40} {x_to},{y0 + 40} {x_to},{y0 + 3}" '
            'fill="none" stroke="#7a7a7a" stroke-dasharray="5,4" stroke-width="1.2" '
            'marker-end="url(#back)"/>'
        )
    out.append("</svg>")
    return "\n".join(out)

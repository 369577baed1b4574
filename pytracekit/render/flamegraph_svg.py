"""A static flame graph as one SVG image: for places that show images but
run no script (READMEs, issue trackers, documents). Each frame's <title> is
its tooltip (name, value, percentage). For zoom and search use the HTML page
(flamegraph.flamegraph_html); both share the layout and colours.
"""
from __future__ import annotations

from html import escape

from ..model import StackProfile
from .flametree import build_tree, layout, unit_label

ROW = 16
MARGIN = 10
HEADER = 36
CHAR_WIDTH = 7.2        # 12px monospace
MIN_WIDTH_PX = 0.1      # narrower frames are left out, as flamegraph.pl does


def flamegraph_svg(profile: StackProfile, *, title: str = "Flame Graph", icicle: bool = False,
                   count_name: str | None = "samples", width: int = 1200) -> str:
    count_name = count_name or unit_label(profile)
    rects = layout(build_tree(profile))
    total = rects[0].value
    depth = max(r.depth for r in rects)
    scale = (width - 2 * MARGIN) / total if total else 0.0
    height = HEADER + (depth + 1) * ROW + MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">',
           '<style>text { font: 12px monospace; fill: #000; } '
           'text.title { font: bold 17px Verdana, sans-serif; } '
           'g.frame:hover rect { stroke: #000; stroke-width: 0.5; }</style>',
           f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
           f'<text class="title" x="{width / 2:.0f}" y="24" text-anchor="middle">'
           f'{escape(title)}</text>']
    if not total:
        out.append(f'<text x="{MARGIN}" y="{HEADER + 12}">No stacks were recorded.</text>')
    for r in rects:
        w = r.value * scale
        if w < MIN_WIDTH_PX or not total:
            continue
        x = MARGIN + r.start * scale
        y = HEADER + (r.depth if icicle else depth - r.depth) * ROW
        tip = (f"{r.name} ({r.value:,} {count_name}, {100 * r.value / total:.2f}%; "
               f"self {r.self_value:,})")
        out.append(f'<g class="frame"><title>{escape(tip)}</title>'
                   f'<rect x="{x:.2f}" y="{y}" width="{max(w - 1, 0.1):.2f}" '
                   f'height="{ROW - 1}" fill="{r.fill}"/>{_label(r.name, x, y, w)}</g>')
    out.append("</svg>\n")
    return "\n".join(out)


def _label(name: str, x: float, y: int, width: float) -> str:
    room = int((width - 6) / CHAR_WIDTH)
    if room < 3:
        return ""
    text = name if len(name) <= room else name[:room - 2] + ".."
    return f'<text x="{x + 3:.2f}" y="{y + 11.5}">{escape(text)}</text>'

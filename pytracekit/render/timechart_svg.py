"""A timeline (pytracekit.render.timeline) as one SVG image, like perf timechart:
a row per CPU (which task ran), per disk (requests in flight) and per task
(running, runnable, sleeping, blocked on I/O), time from left to right. Each
span's <title> is its tooltip; rows are <g class="row"> with data-name."""
from __future__ import annotations

from html import escape

from .timeline import STATES, Row, Timeline

WIDTH = 1200
LABEL = 220             # the row names' column
MARGIN = 10
ROW = 16
TOP = 64                # title, legend, time axis
COLOURS = {"running": "#3b7dd8", "runnable": "#e05a47", "sleeping": "#e4e4e4",
           "io": "#f2a93b"}
CPU_COLOUR = "#3b7dd8"
TICKS = 10


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.3f} ms"


def timechart_svg(timeline: Timeline, *, title: str = "Timechart") -> bytes:
    span_ns = max(timeline.end_ns - timeline.start_ns, 1)
    plot = WIDTH - LABEL - 2 * MARGIN
    scale = plot / span_ns
    rows = ([("cpu", r) for r in timeline.cpus] + [("disk", r) for r in timeline.disks]
            + [("task", r) for r in timeline.tasks])
    height = TOP + len(rows) * ROW + 2 * MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{WIDTH}" '
           f'height="{height}" viewBox="0 0 {WIDTH} {height}">',
           '<style>text { font: 11px monospace; fill: #000; } '
           'text.title { font: bold 16px Verdana, sans-serif; } '
           'rect.span:hover { stroke: #000; stroke-width: 0.5; }</style>',
           f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#fff"/>',
           f'<text class="title" x="{WIDTH / 2:.0f}" y="20" text-anchor="middle">'
           f'{escape(title)}</text>']
    for i, state in enumerate(STATES):
        x = LABEL + MARGIN + i * 120
        out.append(f'<rect class="legend" x="{x}" y="30" width="10" height="10" '
                   f'fill="{COLOURS[state]}"/><text x="{x + 14}" y="39">{state}</text>')
    for i in range(TICKS + 1):
        x = LABEL + MARGIN + plot * i / TICKS
        out.append(f'<line x1="{x:.1f}" y1="{TOP - 8}" x2="{x:.1f}" y2="{height - MARGIN}" '
                   f'stroke="#ccc" stroke-width="0.5"/><text x="{x:.1f}" y="{TOP - 10}" '
                   f'text-anchor="middle">{span_ns * i / TICKS / 1e6:.1f}ms</text>')
    for index, (kind, row) in enumerate(rows):
        out.append(_row(kind, row, TOP + index * ROW, timeline.start_ns, scale))
    out.append("</svg>\n")
    return "\n".join(out).encode()


def _row(kind: str, row: Row, y: int, t0: int, scale: float) -> str:
    parts = [f'<g class="row" data-kind="{kind}" data-name="{escape(row.name)}">',
             f'<text x="{MARGIN}" y="{y + ROW - 4}">{escape(row.name[:30])}</text>']
    for span in row.spans:
        x = LABEL + MARGIN + (span.start_ns - t0) * scale
        state = "running" if kind == "cpu" else span.kind
        fill = CPU_COLOUR if kind == "cpu" else COLOURS.get(state, "#999")
        what = span.kind if kind == "cpu" else state
        tip = f"{what} {_ms(span.ns)}" + (f" ({span.label})" if span.label else "")
        parts.append(f'<rect class="span {state}" x="{x:.3f}" y="{y + 1}" '
                     f'width="{max(span.ns * scale, 0.1):.3f}" height="{ROW - 2}" '
                     f'fill="{fill}"><title>{escape(tip)}</title></rect>')
    parts.append("</g>")
    return "".join(parts)

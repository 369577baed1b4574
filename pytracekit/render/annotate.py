"""`pytracekit annotate`'s output: text like `perf annotate --stdio` (lines, then
instructions, each hottest first) and its one JSON object (annotate.schema.json)."""
from __future__ import annotations

import os
from typing import Any

from ..symbolize.annotation import Annotation, Row
from ..model import LossReport


def _where(row: Row) -> str:
    return f"{os.path.basename(row.place.file)}:{row.place.line}" if row.place else "?"


def _unit(ann: Annotation) -> str:
    return "Samples" if ann.unit == "count" else ann.unit


def text(ann: Annotation, top: int | None = None) -> str:
    if not ann.total:
        return f"# {ann.function}: no samples were taken\n"
    share = 100.0 * ann.value / ann.total
    build = f", build id {ann.module.build_id}" if ann.module.build_id else ""
    out = [f"# {ann.function} in {ann.module.path}{build}",
           f"# {ann.value} of {ann.total} {_unit(ann).lower()} ({share:.2f}%) ran in it; "
           f"{ann.start:#x}-{ann.end:#x}", ""]
    unit = _unit(ann)
    if ann.lines:
        width = max(len(_where(r)) for r in ann.lines[:top])
        out.append(f" Percent {unit:>8}  {'Line':<{width}}  Source")
        for r in ann.lines[:top]:
            out.append(f"{r.percent:7.2f}% {r.value:8d}  {_where(r):<{width}}  "
                       f"{r.source if r.source is not None else ''}".rstrip())
        out.append("")
    rows = ann.instructions[:top]
    width = max((len(r.instruction or "?") for r in rows), default=1)
    width = min(width, 60)
    line_col = "  Line" if ann.lines else ""
    out.append(f" Percent {unit:>8}  {'Address':>10}  {'Instruction':<{width}}{line_col}".rstrip())
    for r in rows:
        insn = r.instruction if r.instruction is not None else "?"
        where = f"  {_where(r)}" if ann.lines else ""
        out.append(f"{r.percent:7.2f}% {r.value:8d}  {r.address:#10x}  {insn:<{width}}{where}"
                   .rstrip())
    return "\n".join(out) + "\n"


def _place(row: Row) -> dict[str, Any]:
    return {"file": row.place.file if row.place else None,
            "line": row.place.line if row.place else None}


def as_obj(ann: Annotation, loss: LossReport, top: int | None = None) -> dict[str, Any]:
    return {"type": "annotate", "function": ann.function, "path": ann.module.path,
            "build_id": ann.module.build_id, "start": ann.start, "end": ann.end,
            "unit": ann.unit, "value": ann.value, "total": ann.total,
            "lines": [{**_place(r), "value": r.value, "percent": r.percent,
                       "source": r.source} for r in ann.lines[:top]],
            "instructions": [{"address": r.address, "value": r.value, "percent": r.percent,
                              "instruction": r.instruction, **_place(r)}
                             for r in ann.instructions[:top]],
            "notes": list(ann.notes), "lost": loss.as_dict()}

"""diff: what changed between two recordings (`perf diff`): per-function
shares before and after, and a differential flame graph with --output."""
from __future__ import annotations

import sys

import click

from ..cli import options
from .. import outfile
from ..collect import recording
from ..render import reporting

DRY_RUN_ARGS: list[str] = []
LOADS_BPF = False   # reads files only: no --ebpf program, nothing to dry-run


@click.command("diff", context_settings=options.TOOL_CONTEXT)
@click.argument("before_path", metavar="BEFORE")
@click.argument("after_path", metavar="AFTER")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Functions to list.")
@click.option("--output", metavar="FILE", default=None,
              help="Write a differential flame graph (HTML): growth red, shrink blue.")
@options.output_options()
@options.standard
def command(before_path, after_path, top, output, out) -> None:
    """Compare two recordings made by `pytracekit record`.

    Functions are ranked by the change in their total (inclusive) share.
    Shares are percentages of each recording's total, so recordings of
    different lengths compare; /s columns are the same totals per second.

    \b
    Example:
      pytracekit diff before.ptk after.ptk --output diff.html
    """
    outfile.check_writable(output)
    before, after = recording.load(before_path), recording.load(after_path)
    if before.unit != after.unit:
        from ..errors import UsageError
        raise UsageError(f"cannot compare {before.unit} ({before_path}) with {after.unit} "
                         f"({after_path}): record both on-CPU or both --off-cpu")
    kinds = before.meta.get("event"), after.meta.get("event")
    if None not in kinds and kinds[0] != kinds[1]:
        from ..errors import UsageError
        raise UsageError(f"cannot compare {kinds[0]} ({before_path}) with {kinds[1]} "
                         f"({after_path}): record both at the same event")
    changes = reporting.diff_functions(before, after)
    unit = unit_name(before)
    out.emit(text=lambda: [f"# {before_path}: {before.total}  ->  {after_path}: {after.total} "
                           f"({unit}); /s: {unit} per second of each recording\n",
                           reporting.diff_text(changes, top=top)],
             json=lambda: [{"type": "change", "function": c.name,
                            "before_self": round(c.before_self, 4),
                            "after_self": round(c.after_self, 4),
                            "before_total": round(c.before_total, 4),
                            "after_total": round(c.after_total, 4),
                            "before_total_per_s": _rounded(c.before_total_rate),
                            "after_total_per_s": _rounded(c.after_total_rate),
                            "before_self_per_s": _rounded(c.before_self_rate),
                            "after_self_per_s": _rounded(c.after_self_rate)} for c in changes])
    if output:
        from ..render.flamegraph import diff_flamegraph_html
        outfile.write_file(output, diff_flamegraph_html(before, after).encode())
        print(f"wrote differential flame graph to {output}", file=sys.stderr)


def unit_name(profile) -> str:
    if profile.unit != "count":
        return profile.unit
    return "events" if profile.meta.get("recorded") == "event" else "samples"


def _rounded(rate: float | None) -> float | None:
    return None if rate is None else round(rate, 3)

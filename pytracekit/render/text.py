"""BCC-style text: log2 histograms, count tables, the loss line. Pure functions."""
from __future__ import annotations

from ..model import Counts, Histogram, LinearHistogram, LossReport, log2_bounds

_BAR_WIDTH = 40


def _bar(count: int, peak: int, width: int = _BAR_WIDTH) -> str:
    filled = int(width * count / peak) if peak else 0
    return ("*" * filled).ljust(width)


def log2_histogram(hist: Histogram, value_name: str | None = None) -> str:
    """The histogram as BCC's print_log2_hist lays it out."""
    name = value_name or hist.unit or "value"
    if not hist.buckets:
        return ""
    top = max(hist.buckets)
    first = 0
    peak = max(hist.buckets.values())
    wide = top > 32
    head_pad = 18 if wide else 9
    lines = [f"{' ' * head_pad}{name:<13}: count    distribution" if not wide else
             f"{' ' * 5}{name:<19} : count    distribution"]
    for slot in range(first, top + 1):
        low, high = log2_bounds(slot)
        count = hist.buckets.get(slot, 0)
        if wide:
            lines.append(f"{low:>20} -> {high:<20} : {count:<8} |{_bar(count, peak)}|")
        else:
            lines.append(f"{low:>10} -> {high:<10} : {count:<8} |{_bar(count, peak)}|")
    return "\n".join(lines)


def linear_histogram(hist: LinearHistogram, value_name: str | None = None) -> str:
    name = value_name or hist.unit or "value"
    if not hist.buckets:
        return ""
    peak = max(hist.buckets.values())
    lines = [f"{name:>13}   : count     distribution"]
    for idx in range(min(hist.buckets), max(hist.buckets) + 1):
        count = hist.buckets.get(idx, 0)
        lines.append(f"{idx * hist.step:>13}   : {count:<8}  |{_bar(count, peak)}|")
    return "\n".join(lines)


def counts_table(counts: Counts, limit: int | None = None) -> str:
    """Columns left-aligned, the count right-aligned, largest first."""
    rows = counts.top(limit)
    headers = list(counts.columns) + [counts.value_name]
    cells = [[str(v) for v in key] + [str(n)] for key, n in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    def line(values: list[str]) -> str:
        parts = [v.ljust(w) for v, w in zip(values[:-1], widths)]
        parts.append(values[-1].rjust(widths[-1]))
        return "  ".join(parts).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in cells])


def loss_line(loss: LossReport) -> str:
    """One line naming everything that was not recorded; empty when nothing was lost."""
    parts = []
    if loss.lost_events:
        parts.append(f"{loss.lost_events} events lost (buffer full)")
    if loss.stack_errors:
        parts.append(f"{loss.stack_errors} stacks not stored (stack map full or collision)")
    if loss.map_full:
        parts.append(f"{loss.map_full} updates dropped (map full)")
    if loss.unknown_frames:
        parts.append(f"{loss.unknown_frames} frames not symbolized")
    return "WARNING: " + "; ".join(parts) if parts else ""

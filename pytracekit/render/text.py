"""BCC-style text: log2 histograms, count tables, the loss line. Pure functions."""
from __future__ import annotations

from ..model import (UNREADABLE, Counts, Histogram, LinearHistogram, LossReport,
                     log2_bounds)

_BAR_WIDTH = 40


def _bar(count: int, peak: int, width: int = _BAR_WIDTH) -> str:
    filled = int(width * count / peak) if peak else 0
    return ("*" * filled).ljust(width)


def log2_histogram(hist: Histogram, value_name: str | None = None) -> str:
    """The histogram laid out as BCC's print_log2_hist does.

    Like BCC, the first row is "0 -> 1" and holds both zero and one.
    """
    name = value_name or hist.unit or "value"
    if not hist.buckets:
        return ""
    top = max(1, max(hist.buckets))
    counts = {slot: hist.buckets.get(slot, 0) for slot in range(1, top + 1)}
    counts[1] += hist.buckets.get(0, 0)
    peak = max(counts.values())
    if top <= 32:
        header = f"     {name:<19} : count     distribution"
        width, stars = 10, _BAR_WIDTH
    else:
        header = f"               {name:<29} : count     distribution"
        width, stars = 20, _BAR_WIDTH // 2
    lines = [header]
    for slot, count in counts.items():
        low, high = log2_bounds(slot)
        if slot == 1:
            low = 0
        lines.append(f"{low:>{width}} -> {high:<{width}} : {count:<8} |{_bar(count, peak, stars)}|")
    return "\n".join(lines)


def linear_histogram(hist: LinearHistogram, value_name: str | None = None) -> str:
    """Fixed-width buckets, laid out as BCC's print_linear_hist does."""
    name = value_name or hist.unit or "value"
    if not hist.buckets:
        return ""
    peak = max(hist.buckets.values())
    lines = [f"     {name:<13} : count     distribution"]
    for idx in range(min(hist.buckets), max(hist.buckets) + 1):
        count = hist.buckets.get(idx, 0)
        lines.append(f"        {idx * hist.step:<10} : {count:<8} |{_bar(count, peak)}|")
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
    if loss.missed_events:
        parts.append(f"{loss.missed_events} events missed: the kernel skipped the probe while "
                     "another BPF program ran on the CPU")
    if loss.stack_errors:
        parts.append(f"{loss.stack_errors} stacks not stored (stack map full or collision)")
    if loss.map_full:
        parts.append(f"{loss.map_full} updates dropped (map full)")
    if loss.unknown_frames:
        parts.append(f"{loss.unknown_frames} frames without a symbol (named MODULE+0xOFFSET)")
    if loss.unreadable_strings:
        parts.append(f"{loss.unreadable_strings} strings unreadable (not paged in; shown as "
                     f"{UNREADABLE} or as their address)")
    unwind = [(loss.unwind_fallback, "by frame pointers (process not loaded yet)"),
              (loss.unwind_fp_steps, "with frame-pointer steps in code that has CFI"),
              (loss.unwind_incomplete, "incomplete (unwinding stopped early)")]
    parts += [f"{n} user stacks {what}" for n, what in unwind if n]
    return "WARNING: " + "; ".join(parts) if parts else ""

"""Model values -> Prometheus metric families (pure functions, no BPF).

log2 Histograms become Prometheus histograms in base units (seconds, bytes);
Counts become counters; a LossReport becomes pytracekit_*_total{tool} counters.
Label values are bounded per metric by a `LabelLimiter`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ..model import Histogram, LossReport

OTHER = "other"

# unit of a Histogram -> (base unit suffix, factor to base unit)
UNITS = {
    "nsecs": ("seconds", 1e-9), "ns": ("seconds", 1e-9), "nanoseconds": ("seconds", 1e-9),
    "usecs": ("seconds", 1e-6), "us": ("seconds", 1e-6), "microseconds": ("seconds", 1e-6),
    "msecs": ("seconds", 1e-3), "ms": ("seconds", 1e-3), "milliseconds": ("seconds", 1e-3),
    "secs": ("seconds", 1.0), "seconds": ("seconds", 1.0),
    "bytes": ("bytes", 1.0), "kbytes": ("bytes", 1024.0), "kib": ("bytes", 1024.0),
}


def base_unit(unit: str) -> tuple[str, float]:
    """('seconds', 1e-6) for 'usecs'; unknown units stay as they are, factor 1."""
    return UNITS.get(unit.lower(), (unit.lower() or "value", 1.0))


@dataclass
class LabelLimiter:
    """Bounded label cardinality for one metric: the first `limit` label sets,
    admitted biggest first at each read, keep their own series; later ones are
    summed into a series whose labels are all `other`. Admitted sets stay
    admitted, so every series (including `other`) only grows, as a counter must."""

    limit: int
    admitted: set[tuple] = field(default_factory=set)

    def admit(self, values: Mapping[tuple, float]) -> None:
        for key, _v in sorted(values.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(self.admitted) >= self.limit:
                break
            self.admitted.add(key)

    def target(self, key: tuple) -> tuple:
        return key if key in self.admitted else (OTHER,) * len(key)

    def fold(self, values: Mapping[tuple, float]) -> dict[tuple, float]:
        self.admit(values)
        out: dict[tuple, float] = {}
        for key, value in values.items():
            key = self.target(key)
            out[key] = out.get(key, 0) + value
        return out


def log2_le_buckets(hist: Histogram, factor: float) -> list[tuple[str, int]]:
    """Cumulative (le, count) pairs. Slot s holds integer values below 2**s (slot
    0 holds 0), so `le` is 2**s units in base units; +Inf holds the total. Every
    slot up to the highest used one is listed, so bucket sets only grow."""
    out, running = [], 0
    for slot in range(max(hist.buckets, default=-1) + 1):
        running += hist.buckets.get(slot, 0)
        out.append((_float_text((1 << slot) * factor), running))
    out.append(("+Inf", running))
    return out


def estimated_sum(hist: Histogram) -> float:
    """Sum in the histogram's unit from bucket midpoints: slot 0 -> 0.5,
    slot s -> 0.75 * 2**s (the middle of [2**(s-1), 2**s))."""
    return sum(count * (0.5 if slot == 0 else 0.75 * (1 << slot))
               for slot, count in hist.buckets.items())


def _float_text(value: float) -> str:
    return repr(float(value)) if value < 1e-3 or value >= 1e15 else f"{value:.10g}"


def histogram_family(name: str, help_text: str, hists: Mapping[tuple, Histogram],
                     labels: tuple[str, ...] = (), *, sums: Mapping[tuple, float] | None = None,
                     limiter: LabelLimiter | None = None) -> HistogramMetricFamily:
    """One histogram family from label values -> log2 Histogram. `name` gets the
    base-unit suffix (`_seconds`, `_bytes`). `sums` (in the histogram's unit)
    are exact sums where the tool keeps them; otherwise the sum is estimated
    from bucket midpoints and HELP says so."""
    unit = next(iter(hists.values())).unit if hists else ""
    suffix, factor = base_unit(unit)
    if limiter is not None and labels:
        hists, sums = _fold_hists(hists, sums, limiter)
    exact = sums is not None
    help_text += (" Sum is exact." if exact else
                  " Sum is estimated from bucket midpoints (log2 buckets).")
    family = HistogramMetricFamily(f"{name}_{suffix}", help_text, labels=list(labels))
    for key in sorted(hists):
        hist = hists[key]
        total = sums[key] if exact else estimated_sum(hist)
        family.add_metric(list(map(str, key)), log2_le_buckets(hist, factor), total * factor)
    return family


def _fold_hists(hists: Mapping[tuple, Histogram], sums: Mapping[tuple, float] | None,
                limiter: LabelLimiter) -> tuple[dict, dict | None]:
    limiter.admit({k: h.total for k, h in hists.items()})
    out: dict[tuple, Histogram] = {}
    out_sums: dict[tuple, float] | None = {} if sums is not None else None
    for key, hist in hists.items():
        target = limiter.target(key)
        merged = out.setdefault(target, Histogram(unit=hist.unit, label=hist.label))
        for slot, n in hist.buckets.items():
            merged.buckets[slot] = merged.buckets.get(slot, 0) + n
        if out_sums is not None:
            out_sums[target] = out_sums.get(target, 0) + sums[key]
    return out, out_sums


def counter_family(name: str, help_text: str, rows: Mapping[tuple, float],
                   labels: tuple[str, ...] = (), *,
                   limiter: LabelLimiter | None = None) -> CounterMetricFamily:
    """A counter family (`name` without `_total`) from label values -> value."""
    if limiter is not None and labels:
        rows = limiter.fold(rows)
    family = CounterMetricFamily(name, help_text, labels=list(labels))
    for key in sorted(rows):
        family.add_metric(list(map(str, key)), rows[key])
    return family


LOSS_HELP = {
    "lost_events": "Events a tool's ring or perf buffer could not take.",
    "stack_errors": "Stacks a tool could not store.",
    "map_full": "Updates a tool dropped because a BPF map was full.",
    "unknown_frames": "Stack frames symbolization could not name (at the last read).",
    "unreadable_strings": "User strings a tool could not read (not paged in).",
    "unwind_fallback": "User stacks walked by frame pointers (process not loaded yet).",
    "unwind_fp_steps": "User stacks with frame-pointer steps in code that has CFI.",
    "unwind_incomplete": "User stacks whose unwinding stopped before their start.",
    "missed_events": "Events the kernel skipped a tool's probe for (another BPF program ran).",
}


def loss_families(losses: Mapping[str, LossReport]) -> Iterable[Any]:
    """pytracekit_lost_events_total{tool=...} and friends; unknown frames are
    counted afresh at each read, so they are a gauge."""
    for field_name, help_text in LOSS_HELP.items():
        kind = GaugeMetricFamily if field_name == "unknown_frames" else CounterMetricFamily
        family = kind(f"pytracekit_{field_name}", help_text, labels=["tool"])
        for tool in sorted(losses):
            family.add_metric([tool], getattr(losses[tool], field_name))
        yield family

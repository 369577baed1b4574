"""perf stat's layout: counters, rates, CPUs utilized, variance, the footer. Pure."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

CLOCKS = ("task-clock", "cpu-clock")
NOT_SUPPORTED = "<not supported>"


@dataclass
class CounterResult:
    label: str                    # the event as given, with modifiers
    kind: str                     # software | hardware | cache | tracepoint
    values: list[int] = field(default_factory=list)   # one per run
    supported: bool = True

    @property
    def is_clock(self) -> bool:
        return self.label.split(":", 1)[0] in CLOCKS

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values) if self.values else 0.0

    @property
    def stddev_pct(self) -> float:
        """perf's ( +- x% ): the standard error of the mean, relative to the mean."""
        return rel_stddev(self.values)


def rel_stddev(values: list[float]) -> float:
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    if not mean:
        return 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return 100.0 * math.sqrt(var / n) / mean


def thousands(value: float, decimals: int = 0) -> str:
    return f"{value:,.{decimals}f}"


def rate(per_second: float) -> str:
    for factor, unit in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if per_second >= factor:
            return f"{per_second / factor:8.3f} {unit}/sec"
    return f"{per_second:8.3f} /sec"


def counter_line(c: CounterResult, elapsed_s: float, clock_s: float | None, runs: int) -> str:
    if not c.supported:
        return f"{NOT_SUPPORTED:>18}      {c.label}"
    if c.is_clock:
        shown = f"{thousands(c.mean / 1e6, 2):>18} msec {c.label:<32} "
        metric = f"# {c.mean / 1e9 / elapsed_s if elapsed_s else 0:8.3f} CPUs utilized"
    else:
        shown = f"{thousands(c.mean):>18}      {c.label:<32} "
        seconds = clock_s if clock_s else elapsed_s
        metric = f"# {rate(c.mean / seconds if seconds else 0.0)}"
    line = shown + metric
    if runs > 1:
        line = f"{shown}{metric:<30}  ( +- {c.stddev_pct:5.2f}% )"
    return line.rstrip()


def clock_seconds(counters: list[CounterResult]) -> float | None:
    for c in counters:
        if c.is_clock and c.supported and c.values:
            return c.mean / 1e9
    return None


def report(what: str, counters: list[CounterResult], elapsed: list[float],
           user_s: float | None = None, sys_s: float | None = None) -> str:
    runs = len(elapsed)
    mean_elapsed = sum(elapsed) / runs if runs else 0.0
    head = f" Performance counter stats for '{what}'" + (f" ({runs} runs)" if runs > 1 else "")
    lines = ["", head + ":", ""]
    clock_s = clock_seconds(counters)
    lines += [counter_line(c, mean_elapsed, clock_s, runs) for c in counters]
    lines.append("")
    if runs > 1:
        sd = math.sqrt(sum((e - mean_elapsed) ** 2 for e in elapsed) / (runs - 1))
        lines.append(f"{mean_elapsed:>18.6f} +- {sd:.6f} seconds time elapsed  "
                     f"( +- {rel_stddev(elapsed):5.2f}% )")
    else:
        lines.append(f"{mean_elapsed:>18.9f} seconds time elapsed")
    if user_s is not None and sys_s is not None and runs == 1:
        lines += ["", f"{user_s:>18.9f} seconds user", f"{sys_s:>18.9f} seconds sys"]
    lines.append("")
    return "\n".join(lines)


INTERVAL_HEADER = "#           time             counts unit events"


def interval_line(t: float, c: CounterResult, value: int) -> str:
    if not c.supported:
        return f"{t:>16.9f} {NOT_SUPPORTED:>18}      {c.label}"
    if c.is_clock:
        return f"{t:>16.9f} {value / 1e6:>18.2f} msec {c.label}"
    return f"{t:>16.9f} {value:>18}      {c.label}"

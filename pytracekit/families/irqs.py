"""hardirqs and softirqs: one implementation, two tracepoint pairs.

Totals (BCC's default, `NAME TOTAL_usecs`), event counts (-C) or one log2
histogram per handler/vector (-d), aggregated in the kernel.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import click

from ..cli import options
from . import summary
from ..engine.loader import Program
from ..model import Counts, Histogram
from ..render.output import Output
from ..collect.stream import cstr, program

SOFTIRQ_NAMES = ("hi", "timer", "net_tx", "net_rx", "block", "irq_poll", "tasklet", "sched",
                 "hrtimer", "rcu")


@dataclass(frozen=True)
class Kind:
    tool: str                       # hardirqs | softirqs
    column: str                     # HARDIRQ | SOFTIRQ
    width: int                      # BCC's name column width
    name_of: Callable[[object], str]
    count_flag: str                 # BCC's long name for -C
    what: str                       # for the help text


def _hardirq_name(key) -> str:
    return cstr(key.name)


def _softirq_name(key) -> str:
    vec = key.vec
    return SOFTIRQ_NAMES[vec] if vec < len(SOFTIRQ_NAMES) else f"vec{vec}"


HARDIRQS = Kind("hardirqs", "HARDIRQ", 26, _hardirq_name, "--count", "hard interrupt handler")
SOFTIRQS = Kind("softirqs", "SOFTIRQ", 16, _softirq_name, "--events", "soft interrupt vector")


def unit_of(count: bool, nanoseconds: bool) -> str:
    return "count" if count else "nsecs" if nanoseconds else "usecs"


def start(kind: Kind, *, dist: bool = False, count: bool = False, cpu: int | None = None,
          nanoseconds: bool = False) -> summary.Session:
    """read() -> {name: Histogram} with dist, else Counts of TOTAL_<unit> per name."""
    prog = program(kind.tool, {"DIST": dist, "COUNT_ONLY": count,
                               "PTK_CPU": -1 if cpu is None else cpu,
                               "UNIT_NS": 1 if nanoseconds else 1000})
    unit = unit_of(count, nanoseconds)
    factor = 1 if count or nanoseconds else 1000
    if dist:
        return summary.Session(prog, lambda p: read_histograms(kind, p, unit))
    return summary.Session(prog, lambda p: read_totals(kind, p, unit, factor))


def read_totals(kind: Kind, prog: Program, unit: str, factor: int) -> Counts:
    totals = Counts((kind.column,), value_name="TOTAL_" + unit)
    for key, value in prog["hist"].items():
        name = (kind.name_of(key),)
        totals.rows[name] = totals.rows.get(name, 0) + value.value
    totals.rows = {name: total // factor for name, total in totals.rows.items()}
    return totals


def read_histograms(kind: Kind, prog: Program, unit: str) -> dict[str, Histogram]:
    out: dict[str, Histogram] = {}
    for key, value in prog["hist"].items():
        name = kind.name_of(key)
        hist = out.setdefault(name, Histogram(unit=unit, label=name))
        hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
    return dict(sorted(out.items()))


def print_totals(kind: Kind, totals: Counts, out: Output, timestamp: bool) -> None:
    """BCC's table, smallest first; in JSON one "total" per name."""
    now = time.strftime("%H:%M:%S")
    rows = sorted(totals.rows.items(), key=lambda kv: (kv[1], kv[0]))     # BCC: ascending
    unit = totals.value_name[len("TOTAL_"):]
    if timestamp:
        out.line(f"{now:<8}")
    out.emit(text=[f"{kind.column:<{kind.width}} {totals.value_name:>11}"] +
             [f"{name:<{kind.width}} {value:>11}" for (name,), value in rows],
             json=[{"type": "total", "name": name, "value": value, "unit": unit, "time": now}
                   for (name,), value in rows])


def make_command(kind: Kind) -> click.Command:
    @click.command(kind.tool, context_settings={**options.TOOL_CONTEXT,
                                                "ignore_unknown_options": True})
    @click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp on output.")
    @click.option("-N", "--nanoseconds", is_flag=True, help="Output in nanoseconds.")
    @click.option("-C", kind.count_flag, "count_only", is_flag=True,
                  help="Show event counts instead of timing.")
    @click.option("-d", "--dist", is_flag=True, help="Show distributions as histograms.")
    @click.option("-c", "--cpu", type=int, default=None, help="Trace this CPU only.")
    @summary.summary_options(with_count=False)      # -C is --count here, as in BCC
    def command(timestamp, nanoseconds, count_only, dist, cpu, interval, duration, out, words):
        if count_only and dist:
            from ..errors import UsageError
            raise UsageError("-C (counts) and -d (distributions) cannot be combined")
        def report(session: summary.Session) -> None:
            if dist:
                summary.print_histograms(session.read(), section=kind.tool[:-1],
                                         value_name=unit_of(count_only, nanoseconds),
                                         out=out, timestamp=timestamp)
            else:
                print_totals(kind, session.read(), out, timestamp)

        summary.main(words, interval, None, duration, out,
                     lambda: start(kind, dist=dist, count=count_only, cpu=cpu,
                                   nanoseconds=nanoseconds),
                     report, clear=("hist",),
                     message=f"Tracing {kind.what} time... Hit Ctrl-C to end.")

    command.help = (f"Summarize time spent in each {kind.what} (totals, -C counts or "
                    "-d histograms).")
    return command

"""Summary tools (biolatency, bitesize, hardirqs, softirqs): maps aggregated
in the kernel, printed at the end or every interval, BCC style.

BCC's summaries take `[interval [count]]` positionally; here the same words
also accept `-- COMMAND`, told apart by whether they are numbers.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import click

from ..cli import options
from ..engine.loader import Program
from ..engine.session import ProgramSession
from ..collect.mapdrain import drained
from ..model import Histogram
from ..render.output import Output
from ..render.text import log2_histogram
from ..engine.runner import Target, announce
from .periodic import interval_and_count, run_periodic


# What a summary tool's start() returns: its program and a reader of the
# results (engine.session, the one session shape every tool's start() has).
Session = ProgramSession


def count_option() -> Callable:
    return click.option("--count", "count", type=int, default=None,
                        help="Stop after this many intervals.")


def summary_options(with_count: bool = True) -> Callable:
    """The options every summary tool ends with: --interval [--count]
    --duration, the output (--json), the standard ones, and
    `[INTERVAL [COUNT]] | -- COMMAND`."""
    decorators = [options.interval_option(), *([count_option()] if with_count else []),
                  options.duration_option(), options.output_options(), options.standard,
                  click.argument("words", nargs=-1, type=click.UNPROCESSED,
                                 metavar="[INTERVAL [COUNT]] | [-- COMMAND]")]

    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


def histograms(table: Any, unit: str, label_of: Callable[[int], str] = str) -> dict[str, Histogram]:
    """A map of ptk_hist_key -> u64 as one Histogram per label."""
    out: dict[str, Histogram] = {}
    for key, value in table.items():
        label = label_of(key.label)
        hist = out.setdefault(label, Histogram(unit=unit, label=label))
        hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
    return dict(sorted(out.items()))


def print_histograms(hists: dict[str, Histogram], *, section: str | None, value_name: str,
                     out: Output, timestamp: bool,
                     extra: dict[str, Any] | None = None) -> None:
    """BCC's print_log2_hist per label ("\\ndisk = vda" before each); in JSON
    each histogram with the time and `extra`."""
    now = time.strftime("%H:%M:%S")
    if timestamp:
        out.line(f"{now:<8}")
    for label, hist in hists.items():
        heading = f"\n{section} = {label}\n" if section else ""
        out.histogram(hist, text=lambda h, heading=heading: heading + log2_histogram(h, value_name),
                      **{"time": now, **(extra or {})})


def run(prog: Program | Session, target: Target, report: Callable[[], None], *, message: str,
        interval: float | None, count: int | None, duration: float | None,
        clear: Iterable[str] = ()) -> None:
    """Attach is done; wait, calling `report()` every interval (the maps in
    `clear` drained as they are read) and at the end (periodic.report_every:
    the one report loop)."""
    prog.ready()
    announce(message)

    def each(final: bool) -> None:
        with drained(prog, [] if final else clear):
            report()

    run_periodic(target, duration=duration, interval=interval, count=count, report=each)


def main(words: tuple[str, ...], interval: float | None, count: int | None,
         duration: float | None, out: Output, open_prog: Callable[[], Session],
         report: Callable[[Session], None], *, clear: Iterable[str], message: str) -> None:
    """A summary tool's command body: `[interval [count]]` or `-- COMMAND`,
    the program, reports every interval and at the end, the loss line."""
    interval, count, command = interval_and_count(words, interval, count)
    target = Target.from_options(None, command)
    try:
        with open_prog() as prog:
            run(prog, target, lambda: report(prog), interval=interval, count=count,
                duration=duration, clear=clear, message=message)
            out.loss(prog.loss())
    finally:
        target.finish()

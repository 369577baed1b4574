"""What the BCC-style summary tools (runqlat, cpudist, runqlen, memleak...) share:
`[interval [count]]` positionals beside `-- COMMAND`, periodic printing, and
histograms split by a label (pid, tid, cpu) read from `struct ptk_hist_key` maps.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from functools import partial
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import click

from ..errors import UsageError
from ..cli.options import split_interval_count
from ..collect.mapdrain import drained
from ..model import Histogram
from ..render.output import Output
from ..render.text import log2_histogram
from ..engine.runner import Stop, Target, announce, run_until_done
from ..engine.session import ProgramSession
from ..textsafe import cstr
from .sched import report_loss


@contextmanager
def attached(target: Target, begin: Callable[[], Any], message: str) -> Iterator[Any]:
    """The lifecycle the summary tools share: begin() compiles and loads the tool,
    then attach and announce; the body runs and prints. Whatever happens the
    session is closed (probes detached, an unwinder's stopped command let go),
    then a command still running is stopped."""
    try:
        tool = begin()
        with tool:
            tool.ready()
            announce(message)
            yield tool
    finally:
        target.finish()


def command_only(args: tuple[str, ...], tool: str) -> tuple[str, ...]:
    """The command, for tools without BCC's `[interval] [count]`: a leading number
    there would otherwise be dropped silently (`kmem 5` ran until Ctrl-C)."""
    interval, _count, cmd = split_interval_count(args)
    if interval is not None:
        raise UsageError(f"{tool} takes no [interval] [count] numbers: give -d SECONDS to "
                         "stop after a while, and a command after --")
    return cmd


def interval_and_count(words: tuple[str, ...], interval: float | None,
                       count: int | None) -> tuple[float | None, int | None, tuple[str, ...]]:
    """(`[interval [count]]` then `COMMAND...`, beside --interval/--count) ->
    (interval, count, command), by the one positional parser every tool uses."""
    pos_interval, pos_count, command = split_interval_count(words)
    if pos_interval is not None:
        if interval is not None:
            raise UsageError("give the interval once: positionally or with --interval")
        interval = pos_interval
    if pos_count is not None:
        if count is not None:
            raise UsageError("give the count once: positionally or with --count")
        count = pos_count
    if count is not None and (count <= 0 or interval is None):
        raise UsageError("a count needs an interval (e.g. `1 5`) and must be positive")
    return interval, count, command


TICK_SLACK_S = 1e-6   # float sums of intervals vs the duration (0.1 * 3 != 0.3)


def report_every(run: Callable[..., str], report: Callable[[bool], None], *,
                 interval: float | None, count: int | None = None,
                 duration: float | None = None,
                 poll: Callable[[int], None] | None = None) -> str:
    """The one report loop of the summary tools: `run` (run_until_done bound
    to a target, or Tracer.run) until done, calling report(final=False) every
    `interval` seconds and ending the run after `count` of them, then
    report(final=True) once, unless the last interval's report already covered
    the end: `count` reached, or the duration ended on the tick that made it
    (BCC prints no extra empty table when -d is a multiple of -i). Ticks are
    scheduled at whole intervals from the start and the run fires the one due
    at the duration's end before ending, so this is counted, not timed: a late
    tick on a loaded machine changes nothing."""
    reported = 0

    def tick() -> None:
        nonlocal reported
        report(False)
        reported += 1
        if count is not None and reported >= count:
            raise Stop("count")

    why = run(duration=duration, interval=interval, on_interval=tick if interval else None,
              poll=poll)
    just_reported = bool(reported) and (
        (count is not None and reported >= count) or
        (why == "duration" and duration is not None and
         reported * interval >= duration - TICK_SLACK_S))
    if not just_reported:
        report(True)
    return why


def run_periodic(target: Target, *, duration: float | None, interval: float | None,
                 count: int | None, report: Callable[[bool], None],
                 poll: Callable[[int], None] | None = None) -> str:
    """report_every for a tool holding a Target."""
    return report_every(partial(run_until_done, target), report, interval=interval,
                        count=count, duration=duration, poll=poll)


def timestamp() -> str:
    return time.strftime("%H:%M:%S")


@dataclass
class LabeledHists:
    """Histograms keyed by a label value (0 when not split), e.g. per pid."""

    hists: dict[int, Histogram]
    names: dict[int, str]          # label -> comm (may be empty)


def read_labeled_hists(hist_map: Any, unit: str, names_map: Any = None) -> LabeledHists:
    hists: dict[int, Histogram] = {}
    for key, value in hist_map.items():
        hist = hists.setdefault(key.label, Histogram(unit=unit))
        hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
    names = {}
    if names_map is not None:
        for key, value in names_map.items():
            names[key.value] = cstr(value.comm)
    return LabeledHists(hists, names)


def print_labeled_hists(result: LabeledHists, *, section: str | None, show_name: bool,
                        out: "Output", stamp: bool, extra: dict | None = None) -> None:
    """BCC's print_log2_hist: one histogram, or one per `section = value`; in
    JSON each with its label (and comm), the time with `stamp`, and `extra`."""
    now = timestamp()
    if stamp:
        out.line(f"{now}")
    for label in sorted(result.hists):
        name = result.names.get(label, "")
        fields: dict[str, Any] = {}
        heading = ""
        if section:
            fields[section] = label
            if show_name:
                fields["comm"] = name
            shown = f"{label} {name}" if show_name and name else f"{label}"
            heading = f"\n{section} = {shown}\n"
        if stamp:
            fields["time"] = now
        out.histogram(result.hists[label],
                      text=lambda hist, heading=heading: heading + log2_histogram(hist),
                      **{**fields, **(extra or {})})


def histogram_tool_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """BCC's runqlat/cpudist options: -T -m -P -L -p -t, [interval [count]],
    plus -d, -i, the output (--json) and `-- COMMAND` (all in ARGS)."""
    from ..cli import options
    decorators = [
        click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp on output."),
        click.option("-m", "--milliseconds", is_flag=True, help="Histogram in milliseconds."),
        click.option("-P", "--pids", "per_pid", is_flag=True, help="A histogram per process."),
        click.option("-L", "--tids", "per_tid", is_flag=True, help="A histogram per thread."),
        options.pid_option("-p"), options.tid_option("-t"), options.duration_option("-d"),
        options.interval_option("-i"), options.output_options(), options.standard,
        click.argument("args", nargs=-1, type=click.UNPROCESSED),
    ]
    for dec in reversed(decorators):
        f = dec(f)
    return f


@dataclass
class BpfTool(ProgramSession):
    """A summary tool's session (engine.session) around its program; with a
    symbolizer, frames it could not name join the loss report."""

    prog: Any
    symbolizer: Any = None

    def loss(self) -> Any:
        loss = self.prog.loss()
        if self.symbolizer is not None:
            loss.unknown_frames = self.symbolizer.unknown_frames
        return loss

    def warm(self) -> None:
        """Symbolize what is new while the processes still exist (tools with stacks)."""

    def poll(self, timeout_ms: int) -> None:
        """For run_until_done(poll=...): wait, then warm."""
        time.sleep(timeout_ms / 1000)
        self.warm()


@dataclass
class HistogramTool(BpfTool):
    """A program with a `hist` map of ptk_hist_key and a `names` map (label -> comm)."""

    unit: str = "usecs"

    def read(self) -> LabeledHists:
        return read_labeled_hists(self.prog["hist"], self.unit, self.prog["names"])

    def clear(self) -> None:
        self.prog["hist"].clear()


def run_histogram_tool(tool: HistogramTool, target: Target, *, message: str,
                       section: str | None, show_name: bool, stamp: bool,
                       duration: float | None, interval: float | None, count: int | None,
                       out: Output, extra: dict | None = None, unseen: str = "") -> None:
    """runqlat/cpudist: attach, print histograms every interval and at the end.
    `unseen` names what the program's bpf/ptk_sched.h counts as not measured
    ("waits"): reported beside the loss."""
    with tool:
        tool.ready()
        announce(message)

        def report(final: bool) -> None:
            if interval:
                out.line()
            # between intervals the histogram is drained as it is read
            with drained(tool.prog, [] if final else ["hist"]):
                result = tool.read()
            print_labeled_hists(result, section=section, show_name=show_name,
                                out=out, stamp=stamp, extra=extra)
        run_periodic(target, duration=duration, interval=interval, count=count, report=report)
        if unseen:
            report_loss(out, tool.prog, tool.loss(), unseen)
        else:
            out.loss(tool.loss())


def require_tracepoints(tool: str, *names: str) -> None:
    """Fail with one clear line before compiling when a tracepoint a tool's
    program attaches to (TRACEPOINT_PROBE, attached by BCC at load) is missing."""
    from ..engine import settings
    from ..errors import NotFoundError
    from ..kernel.tracefs import tracepoint
    from ..engine.loader import require_root
    if settings.current().ebpf:
        return
    require_root()                       # tracefs is readable by root only
    for name in names:
        category, event = name.split(":", 1)
        try:
            tracepoint(category, event)
        except NotFoundError as exc:
            raise NotFoundError(f"{tool} needs tracepoint {name}, which this kernel does not "
                                f"have ({exc.message})") from None


def require_alive(pid: int) -> None:
    """Uprobes with a pid resolve libraries through /proc/PID/maps: say so
    plainly when the process is already gone (compiling takes a second)."""
    import os
    from ..errors import NotFoundError
    if pid and not os.path.exists(f"/proc/{pid}/maps"):
        raise NotFoundError(f"process {pid} exited before its probes were attached")

"""funcinterval: the time between consecutive calls of a function or events of a
tracepoint, as a log2 histogram (BCC's funcinterval).

    pytracekit funcinterval 'c:malloc'                     nanoseconds between mallocs
    pytracekit funcinterval -m -p 1234 '/bin/app:tick'     milliseconds, one process
    pytracekit funcinterval -u t:block:block_rq_issue 5    5 seconds
"""
from __future__ import annotations

import click

from ..cli import options
from ..api import Tracer
from ..collect.mapdrain import drained
from ..errors import UsageError
from ..model import Histogram
from ..probes.specs import parse_spec
from ..render.text import log2_histogram
from ..cli.options import CommandAfterDashes, command_of
from ..engine.session import TracerSession
from . import _probe_cli as common

DRY_RUN_ARGS = ["c:getpid"]
FUNCTIONS = "int interval_{n}(void *ctx) {{ on_call(); return {ret}; }}\n"
UNITS = {"nsecs": 1, "usecs": 1000, "msecs": 1000000}


class Intervals(TracerSession):
    """A running funcinterval: read() gives the histogram since start or clear()."""

    def __init__(self, tracer: Tracer, unit: str) -> None:
        self.tracer, self.unit = tracer, unit

    def read(self) -> Histogram:
        hist = Histogram(unit=self.unit)
        for key, value in self.tracer["hist"].items():
            hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
        return hist

    def clear(self) -> None:
        self.tracer["hist"].clear()


def start(pattern: str, *, pid: int | None = None, command: tuple[str, ...] = (),
          unit: str = "nsecs") -> Intervals:
    spec = parse_spec(pattern)
    if spec.kind not in ("kprobe", "uprobe", "tracepoint") or spec.offset:
        raise UsageError(f"funcinterval counts function entries or tracepoint events: give "
                         f"FUNC, LIB:FUNC, /path:FUNC or t:CATEGORY:EVENT, not '{pattern}'")
    tracer = Tracer(file="funcinterval", pid=pid, command=command)
    try:
        probes = tracer.resolve(spec)
        for n, probe in enumerate(probes):
            tracer.probe(probe, f"interval_{n}")
        tracer.defines.update(PTK_GENERATED_PROBES=1, UNIT_NS=UNITS[unit])
        tracer.replace.update(common.generated(FUNCTIONS, probes, range(len(probes))))
        tracer.start(common.tracing_message(len(probes), pattern))
    except BaseException:
        tracer.close()
        raise
    return Intervals(tracer, unit)


@click.command("funcinterval", cls=CommandAfterDashes, context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.timestamp_option("-T")
@click.option("-u", "--microseconds", "micro", is_flag=True, help="Microsecond histogram.")
@click.option("-m", "--milliseconds", "milli", is_flag=True, help="Millisecond histogram.")
@options.output_options()
@options.standard
@common.pattern_argument()
@click.pass_context
def command(ctx, pid, interval, duration, timestamp, micro, milli, out, pattern):
    """Show the time between consecutive calls of PATTERN as a log2 histogram.

    PATTERN: func (kernel), lib:func, /path:func, t:category:event; '*' wildcards.
    """
    if micro and milli:
        raise UsageError("-u and -m are mutually exclusive")
    unit = "usecs" if micro else "msecs" if milli else "nsecs"
    intervals = start(pattern, pid=pid, command=command_of(ctx), unit=unit)

    def report() -> None:
        with drained(intervals.tracer, ["hist"]):
            hist = intervals.read()
        stamp = common.timestamp() if timestamp else None
        out.line()
        if stamp:
            out.line(stamp)
        out.histogram(hist, text=lambda h: log2_histogram(h, unit) if h.buckets
                      else f"     {unit:<19} : count     distribution",
                      **({"time": stamp} if stamp else {}))

    common.run_tool(intervals, report, duration=duration, interval=interval, out=out)

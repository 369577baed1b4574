"""funclatency: time spent in functions as log2 histograms (BCC's funclatency).

    pytracekit funclatency -u 'c:malloc'              malloc() latency, microseconds
    pytracekit funclatency -F -p 1234 '/bin/app:db_*' one histogram per function
    pytracekit funclatency -m c:sleep -- ./job        a command from its first instruction
"""
from __future__ import annotations

from dataclasses import dataclass

import click

from ..cli import options
from ..api import Tracer
from ..collect.mapdrain import drained
from ..errors import UsageError
from ..model import Histogram
from ..probes.specs import ResolvedProbe, parse_spec
from ..render.text import log2_histogram
from ..engine.session import TracerSession
from ..families import summary
from . import _probe_cli as common

DRY_RUN_ARGS = ["c:getpid"]
FUNCTIONS = ("int latency_entry_{n}(void *ctx) {{ return on_entry(); }}\n"
             "int latency_return_{n}(void *ctx) {{ return on_return({n}); }}\n")
UNITS = {"nsecs": 1, "usecs": 1000, "msecs": 1000000}


@dataclass
class Latency:
    """One histogram and its totals (in `hist.unit`)."""

    hist: Histogram
    total: int
    calls: int

    @property
    def average(self) -> float:
        return self.total / self.calls if self.calls else 0.0


@dataclass
class FuncLatency(TracerSession):
    """A running funclatency; read() gives the latencies since start or the last clear()."""

    tracer: Tracer
    probes: list[ResolvedProbe]
    unit: str
    per_function: bool

    def read(self) -> dict[str, Latency]:
        """Label ("" when all functions are combined) -> latency."""
        sums = self.tracer["sums"]
        out: dict[str, Latency] = {}
        labels = {n: p.name for n, p in enumerate(self.probes)} if self.per_function else {}
        for n, _probe in enumerate(self.probes):
            label = labels.get(n, "")
            lat = out.setdefault(label, Latency(Histogram(unit=self.unit, label=label), 0, 0))
            lat.total += sums.sum(sums.Key(2 * n)).value
            lat.calls += sums.sum(sums.Key(2 * n + 1)).value
        for key, value in self.tracer["dist"].items():
            label = labels.get(key.label, "")
            hist = out[label].hist
            hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
        return out

    def clear(self) -> None:
        self.tracer["dist"].clear()
        self.tracer["sums"].clear()


def start(pattern: str, *, pid: int | None = None, command: tuple[str, ...] = (),
          regex: bool = False, unit: str = "nsecs", per_function: bool = False,
          max_depth: int = 32, announce: bool = True) -> FuncLatency:
    spec = parse_spec(pattern, regex=regex)
    if spec.kind not in ("kprobe", "uprobe") or spec.offset:
        raise UsageError(f"funclatency times whole functions: give FUNC, LIB:FUNC or "
                         f"/path:FUNC, not '{pattern}'")
    tracer = Tracer(file="funclatency", pid=pid, command=command)
    try:
        entries = tracer.resolve(spec)
        # Returns first: a call entered before its return probe exists would
        # never return to us and would leave its thread's depth off by one.
        for n, probe in enumerate(entries):
            tracer.probe(probe.returning(), f"latency_return_{n}")
        for n, probe in enumerate(entries):
            tracer.probe(probe, f"latency_entry_{n}")
        tracer.defines.update(PTK_GENERATED_PROBES=1, LATENCY_PROBES=len(entries),
                              LATENCY_UNIT_NS=UNITS[unit], LATENCY_PER_FUNCTION=per_function,
                              MAX_DEPTH=max_depth)
        tracer.replace.update(common.generated(FUNCTIONS, entries, range(len(entries))))
        tracer.start(common.tracing_message(len(entries), pattern) if announce else None)
    except BaseException:
        tracer.close()
        raise
    return FuncLatency(tracer, entries, unit, per_function)


def format_latency(lat: Latency) -> str:
    lines = []
    if lat.hist.label:
        lines.append(f"\nFunction = {lat.hist.label}")
    lines.append(log2_histogram(lat.hist, lat.hist.unit))
    if lat.calls:
        lines.append(f"\navg = {int(lat.average)} {lat.hist.unit}, total: {lat.total} "
                     f"{lat.hist.unit}, count: {lat.calls}\n")
    return "\n".join(lines)


@click.command("funclatency", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.timestamp_option("-T")
@click.option("-u", "--microseconds", "micro", is_flag=True, help="Microsecond histogram.")
@click.option("-m", "--milliseconds", "milli", is_flag=True, help="Millisecond histogram.")
@click.option("-F", "--function", "per_function", is_flag=True,
              help="Show a separate histogram per function.")
@click.option("-r", "--regexp", "regex", is_flag=True,
              help='Use regular expressions. Default is "*" wildcards only.')
@click.option("-l", "--level", "max_depth", type=click.IntRange(1, 1024), default=32,
              show_default=True, help="Nesting depth of recursive calls that is timed.")
@options.output_options()
@options.standard
@common.pattern_argument()
@options.command_argument
def command(pid, interval, duration, timestamp, micro, milli, per_function, regex, max_depth,
            out, pattern, command):
    """Time functions matching PATTERN and show log2 histograms of their latency.

    PATTERN: func (kernel), lib:func, /path:func; '*' wildcards, or regular
    expressions with -r.
    """
    if micro and milli:
        raise UsageError("-u and -m are mutually exclusive")
    interval, count, command = summary.interval_and_count(command, interval, None)
    unit = "usecs" if micro else "msecs" if milli else "nsecs"
    timer = start(pattern, pid=pid, command=command, regex=regex, unit=unit,
                  per_function=per_function, max_depth=max_depth)

    def report() -> None:
        with drained(timer.tracer, ["dist", "sums"]):
            latencies = timer.read()
        stamp = common.timestamp() if timestamp else None
        out.line()
        if stamp:
            out.line(stamp)
        if not any(lat.calls for lat in latencies.values()):
            out.line(f"     {unit:<19} : count     distribution")
        for lat in latencies.values():
            out.histogram(lat.hist, text=lambda _hist, lat=lat: format_latency(lat) if lat.calls
                          else None, sum=lat.total, count=lat.calls,
                          **({"time": stamp} if stamp else {}))

    common.run_tool(timer, report, duration=duration, interval=interval, count=count,
                    out=out)

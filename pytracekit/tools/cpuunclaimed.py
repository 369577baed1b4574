"""cpuunclaimed: how busy the CPUs were, and how often a CPU sat idle while
another had tasks waiting (BCC's cpuunclaimed line: "%CPU  N%, unclaimed idle
M%"), from every CPU's run queue length sampled at the same rate (cpu-clock
perf events with a fixed period) and compared tick by tick. -j/-J print each
tick's run queue lengths (and -J each CPU's sample offset) as BCC's CSV."""
from __future__ import annotations

import time
from dataclasses import dataclass

import click

from ..cli import options
from ..errors import UsageError
from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..engine.loader import Program
from ..families.periodic import run_periodic, timestamp
from ..engine.runner import Target, announce
from ..engine.session import ProgramSession

DRY_RUN_ARGS: list[str] = []
FREQUENCY = 99                           # BCC's: off the beat of 100 Hz timers
PERIOD_NS = 1_000_000_000 // FREQUENCY
CSV_READ_EVERY = 0.2                     # seconds, as BCC's -j


@dataclass
class Tally:
    """CPU samples of complete ticks: busy (a task on the CPU), idle, and
    idle while another CPU had a task waiting (at most the waiting tasks)."""

    busy: int = 0
    idle: int = 0
    unclaimed: int = 0
    ticks: int = 0
    incomplete: int = 0                  # ticks some CPU did not sample (skipped)

    def add_tick(self, lens: list[int]) -> None:
        running = sum(1 for n in lens if n > 0)
        queued = sum(n - 1 for n in lens if n > 1)
        idle = len(lens) - running
        self.busy += running
        self.idle += idle
        self.unclaimed += min(idle, queued)
        self.ticks += 1

    def percent(self) -> tuple[float, float]:
        total = self.busy + self.idle
        return (100 * self.busy / total, 100 * self.unclaimed / total) if total else (0.0, 0.0)


def tally(samples: dict[int, dict[int, int]], ncpu: int) -> Tally:
    """`samples`: tick -> {cpu: nr_running}."""
    out = Tally()
    for tick in sorted(samples):
        lens = samples[tick]
        if len(lens) == ncpu:
            out.add_tick(list(lens.values()))
        else:
            out.incomplete += 1
    return out


def online_cpus() -> int:
    from bcc.utils import get_online_cpus
    return len(get_online_cpus())


def csv_header(ncpu: int, stamp: bool, offsets: bool) -> str:
    """BCC's -j (and -J) header."""
    return ",".join((["TIME"] if stamp else []) + ["TIMESTAMP_ns"] +
                    [f"CPU{c}" for c in range(ncpu)] +
                    ([f"OFFSET_ns_CPU{c}" for c in range(ncpu)] if offsets else []))


def csv_rows(ticks: dict[int, dict[int, tuple[int, int]]], ncpu: int, stamp: bool,
             offsets: bool) -> list[str]:
    """One line per tick: its first sample's time (ns, the kernel's monotonic
    clock), each CPU's run queue length and (-J) sample offset from the first.
    A CPU that did not sample the tick has empty fields (BCC prints 0)."""
    out = []
    for tick in sorted(ticks):
        cpus = ticks[tick]
        first = min(ts for ts, _n in cpus.values())
        fields = ([timestamp()] if stamp else []) + [str(first)]
        fields += [str(cpus[c][1]) if c in cpus else "" for c in range(ncpu)]
        if offsets:
            fields += [str(cpus[c][0] - first) if c in cpus else "" for c in range(ncpu)]
        out.append(",".join(fields))
    return out


class RunQueues(ProgramSession):
    def __init__(self, prog: Program) -> None:
        self.prog, self.ncpu = prog, online_cpus()

    def take_ticks(self, final: bool) -> dict[int, dict[int, tuple[int, int]]]:
        """The ticks every CPU has had time to sample, taken out of the map
        (the current tick and the one before wait, unless `final`): tick ->
        {cpu: (sample time ns, run queue length)}."""
        last = time.monotonic_ns() // PERIOD_NS - (0 if final else 2)
        table = self.prog["samples"]
        ticks: dict[int, dict[int, tuple[int, int]]] = {}
        for key, value in list(table.items()):
            if key.tick <= last:
                ticks.setdefault(key.tick, {})[key.cpu] = (value.ts, value.running)
                del table[key]
        return ticks

    def take(self, final: bool) -> Tally:
        ticks = self.take_ticks(final)
        return tally({t: {c: n for c, (_ts, n) in cpus.items()} for t, cpus in ticks.items()},
                     self.ncpu)

    def read(self) -> Tally:
        """The session's read(): every tick sampled since the last take."""
        return self.take(final=True)


def start() -> RunQueues:
    prog = Program.from_file("cpuunclaimed", defines={"PERIOD_NS": PERIOD_NS})
    try:
        prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["cpu-clock"], "on_sample",
                               sample_period=PERIOD_NS, label="cpu-clock")
    except BaseException:
        prog.close()
        raise
    return RunQueues(prog)


@click.command("cpuunclaimed", context_settings={**options.TOOL_CONTEXT,
                                                 "ignore_unknown_options": True})
@click.option("-j", "--csv", "csv", is_flag=True,
              help="Print every tick's run queue lengths as comma-separated values.")
@click.option("-J", "--fullcsv", is_flag=True,
              help="As -j, plus each CPU's sample offset in the tick (ns).")
@click.option("-T", "--timestamp", "stamp", is_flag=True, help="Include a timestamp on output.")
@options.interval_option("-i")
@options.duration_option("-d")
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED,
                metavar="[INTERVAL [COUNT]] | [-- COMMAND]")
def command(csv, fullcsv, stamp, interval, duration, out, words):
    """CPU utilization and idle CPUs unclaimed while tasks waited elsewhere."""
    pos_interval, count, command_words = options.split_interval_count(words)
    if pos_interval is not None and interval is not None:
        raise UsageError("give the interval once: positionally or with --interval")
    csv = csv or fullcsv
    if csv and (pos_interval is not None or interval is not None):
        raise UsageError("-j/-J print every tick: give no interval (use -d SECONDS or "
                         "-- COMMAND to bound the run)")
    if csv:
        out.text_only("-j/-J")
        interval, count = CSV_READ_EVERY, None
    interval = interval or pos_interval or 1.0
    target = Target.from_options(None, command_words)
    try:
        queues = start()
        try:
            queues.prog.ready()
            if csv:
                out.line(csv_header(queues.ncpu, stamp, fullcsv))
            else:
                announce("Sampling run queues... Output every %g seconds. Hit Ctrl-C to end."
                         % interval)

            def report(final: bool) -> None:
                if csv:
                    out.emit(text=csv_rows(queues.take_ticks(final), queues.ncpu, stamp, fullcsv))
                    return
                t = queues.take(final)
                util, unclaimed = t.percent()
                out.emit(text=lambda: (f"{timestamp():<8} " if stamp else "") +
                         "%%CPU %6.2f%%, unclaimed idle %0.2f%%" % (util, unclaimed),
                         json=lambda: {"type": "interval", "time": timestamp(), "ticks": t.ticks,
                                       "incomplete_ticks": t.incomplete, "busy": t.busy,
                                       "idle": t.idle, "unclaimed": t.unclaimed,
                                       "cpu_percent": round(util, 2),
                                       "unclaimed_percent": round(unclaimed, 2)})

            run_periodic(target, duration=duration, interval=interval, count=count,
                         report=report)
            out.loss(queues.loss())
        finally:
            queues.close()
    finally:
        target.finish()

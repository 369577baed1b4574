"""runqlen: run queue length sampled on every CPU, like BCC's runqlen.

A cpu-clock perf event fires FREQUENCY times a second on each CPU and reads
that CPU's number of runnable tasks (less the running one). -C splits by
CPU, -O prints occupancy: the share of samples with a task waiting.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..engine.loader import Program
from ..collect.mapdrain import drained
from ..model import LinearHistogram
from ..families.periodic import BpfTool, attached, run_periodic, timestamp
from ..render.text import linear_histogram
from ..engine.runner import Target

DRY_RUN_ARGS: list[str] = []


@dataclass
class Runqlen(BpfTool):

    def read(self) -> dict[int, LinearHistogram]:
        hists: dict[int, LinearHistogram] = {}
        for key, value in self.prog["hist"].items():
            hist = hists.setdefault(key.label, LinearHistogram(unit="runqlen"))
            hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
        return hists

    def clear(self) -> None:
        self.prog["hist"].clear()



def start(*, per_cpu: bool = False, frequency: int = 99, **_: Any) -> Runqlen:
    prog = Program.from_file("runqlen", defines={"PER_CPU": per_cpu})
    prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["cpu-clock"], "on_sample",
                           sample_freq=frequency, label="cpu-clock")
    return Runqlen(prog)


def occupancy(hist: LinearHistogram) -> float:
    """Percent of samples with at least one task waiting."""
    if not hist.total:
        return 0.0
    return 100.0 * sum(c for n, c in hist.buckets.items() if n > 0) / hist.total


def report_text(hists: dict[int, LinearHistogram], per_cpu: bool, occ: bool) -> str:
    out = []
    for cpu in sorted(hists):
        hist = hists[cpu]
        if occ:
            out.append(f"runqocc, CPU {cpu:<3} {occupancy(hist):6.2f}%" if per_cpu
                       else f"runqocc: {occupancy(hist):0.2f}%")
            continue
        if per_cpu:
            out.append(f"\ncpu = {cpu}")
        out.append(linear_histogram(hist, "runqlen"))
    return "\n".join(out)


def report_json(hists: dict[int, LinearHistogram], per_cpu: bool) -> list[dict[str, Any]]:
    objs = []
    for cpu in sorted(hists):
        hist = hists[cpu]
        obj: dict[str, Any] = {"type": "runqlen", "total": hist.total,
                               "occupancy": round(occupancy(hist), 4),
                               "buckets": [{"length": l, "count": hist.buckets[l]}
                                           for l in sorted(hist.buckets)]}
        if per_cpu:
            obj["cpu"] = cpu
        objs.append(obj)
    return objs


@click.command("runqlen", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@click.option("-T", "--timestamp", "stamp", is_flag=True, help="Include a timestamp on output.")
@click.option("-O", "--runqocc", "occ", is_flag=True, help="Report run queue occupancy.")
@click.option("-C", "--cpus", "per_cpu", is_flag=True, help="Print output for each CPU.")
@click.option("-F", "--frequency", type=options.SampleFrequency(10000), default=99, show_default=True,
              help="Samples per second on each CPU.")
@options.duration_option("-d")
@options.interval_option("-i")
@options.output_options()
@options.standard
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(stamp, occ, per_cpu, frequency, duration, interval, out, args):
    """Summarize scheduler run queue length as a histogram.

    ARGS: [interval [count]] and/or -- COMMAND to run while sampling.
    """
    pos_interval, count, cmd = options.split_interval_count(args)
    interval = interval or pos_interval
    target = Target.from_options(None, cmd)
    with attached(target, lambda: start(per_cpu=per_cpu, frequency=frequency),
                  f"Sampling run queue length at {frequency} Hz... Hit Ctrl-C to end.") as tool:
        def report(final: bool) -> None:
            with drained(tool.prog, [] if final else ["hist"]):
                hists = tool.read()
            if interval:
                out.line()
            now = timestamp() if stamp else None
            if now:
                out.line(now)
            out.emit(text=lambda: report_text(hists, per_cpu, occ),
                     json=lambda: [{**obj, **({"time": now} if now else {})}
                                   for obj in report_json(hists, per_cpu)])
        run_periodic(target, duration=duration, interval=interval, count=count,
                     report=report)
        out.loss(tool.loss())

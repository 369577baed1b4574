"""timechart: an SVG of CPUs, disks and tasks over time, like `perf
timechart`: which task ran on each CPU, the block requests in flight on each
disk, and each task's running, runnable, sleeping and blocked (I/O) spans,
from the same per-run records as timehist plus block_rq_issue/complete."""
from __future__ import annotations

import sys
import time

import click

from ..kernel import block
from ..cli import options
from .. import outfile
from ..collect import schedtimes
from ..families import event_tools
from ..render import timeline
from ..render.timechart_svg import timechart_svg
from ..engine.runner import Target, announce, run_until_done
from ..collect.stream import drain_budget

DRY_RUN_ARGS: list[str] = []
DEFAULT_OUTPUT = "timechart.svg"


def monotonic_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)   # bpf_ktime_get_ns's clock


@click.command("timechart", context_settings=options.TOOL_CONTEXT)
@click.option("-o", "--output", default=DEFAULT_OUTPUT, show_default=True, metavar="FILE",
              help="The SVG file to write.")
@options.pid_option("-p")
@options.duration_option("-d")
@event_tools.buffer_option("-b")
@options.output_options()
@options.standard
@options.command_argument
def command(output, pid, duration, buffer_pages, out, command):
    """An SVG of CPUs, disks and tasks over time, like perf timechart."""
    outfile.check_writable(output)
    target = Target.from_options(pid, command)
    records: list = []

    def collect(rows: list[tuple]) -> None:
        records.extend(map(schedtimes.record, rows))

    try:
        with schedtimes.start(target, block_io=True,
                              buffer_pages=buffer_pages) as events:
            events.prog.ready()
            events.open()
            announce("Tracing scheduler switches and block I/O... Hit Ctrl-C to end.")
            start_ns = monotonic_ns()
            try:
                why = run_until_done(target, duration=duration,
                                     poll=lambda ms: events.poll(collect, ms))
                events.drain(collect, drain_budget(why))
            except KeyboardInterrupt:       # a second Ctrl-C: write what was read
                pass
            end_ns = monotonic_ns()
            chart = timeline.build(records, start_ns, end_ns, block.dev_name)
            outfile.write_file(output, timechart_svg(chart))
            summary = events.summary()
            seconds = (end_ns - start_ns) / 1e9
            out.emit(json={"type": "written", "path": output, "seconds": round(seconds, 6),
                           "cpus": len(chart.cpus), "disks": len(chart.disks),
                           "tasks": len(chart.tasks), "records": summary.captured})
            print(f"Written {seconds:.1f} seconds of trace to {output}.", file=sys.stderr)
            out.loss(summary.loss)
    finally:
        target.finish()

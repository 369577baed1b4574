"""runqlat: run queue (scheduler) latency as a histogram, like BCC's runqlat.

The time from a task becoming runnable (woken, or preempted while still
runnable) until it runs, from sched_wakeup, sched_wakeup_new and sched_switch.
"""
from __future__ import annotations

from typing import Any

import click

from ..cli import options
from ..engine.loader import Program
from ..families.periodic import HistogramTool, histogram_tool_options, run_histogram_tool
from ..engine.runner import Target

DRY_RUN_ARGS: list[str] = []
SECTIONS = {0: None, 1: "pid", 2: "tid", 3: "pidns"}


def start(*, pid: int = 0, tid: int = 0, milliseconds: bool = False, label_by: int = 0,
          **_: Any) -> HistogramTool:
    """label_by: 0 one histogram, 1 per process, 2 per thread, 3 per PID namespace."""
    defines = {"FILTER_PID": pid or 0, "FILTER_TID": tid or 0, "LABEL_BY": label_by,
               "UNIT_DIV": 1000000 if milliseconds else 1000}
    prog = Program.from_file("runqlat", defines=defines)
    return HistogramTool(prog, unit="msecs" if milliseconds else "usecs")


@click.command("runqlat", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@click.option("--pidnss", "per_pidns", is_flag=True, help="A histogram per PID namespace.")
@histogram_tool_options
def command(timestamp, milliseconds, per_pid, per_tid, per_pidns, pid, tid, duration,
            interval, out, args):
    """Summarize run queue latency as a histogram.

    ARGS: [interval [count]] and/or -- COMMAND to run and trace.
    """
    pos_interval, count, cmd = options.split_interval_count(args)
    if sum([per_pid, per_tid, per_pidns]) > 1:
        raise click.UsageError("give only one of -P, -L, --pidnss")
    label_by = 1 if per_pid else 2 if per_tid else 3 if per_pidns else 0
    target = Target.from_options(pid, cmd)
    try:
        tool = start(pid=target.pid, tid=tid or 0, milliseconds=milliseconds,
                     label_by=label_by)
        run_histogram_tool(tool, target, message="Tracing run queue latency... Hit Ctrl-C to end.",
                           section=SECTIONS[label_by], show_name=False, out=out,
                           stamp=timestamp, duration=duration,
                           interval=interval or pos_interval, count=count,
                           unseen="run queue waits")
    finally:
        target.finish()

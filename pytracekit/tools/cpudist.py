"""cpudist: on-CPU (or -O off-CPU) time per task between context switches,
as a histogram, like BCC's cpudist. From the sched_switch raw tracepoint."""
from __future__ import annotations

from typing import Any

import click

from ..cli import options
from ..engine.loader import Program
from ..families.periodic import HistogramTool, histogram_tool_options, run_histogram_tool
from ..engine.runner import Target

DRY_RUN_ARGS: list[str] = []


def start(*, pid: int = 0, tid: int = 0, milliseconds: bool = False, label_by: int = 0,
          offcpu: bool = False, **_: Any) -> HistogramTool:
    """label_by: 0 one histogram, 1 per process, 2 per thread."""
    defines = {"FILTER_PID": pid or 0, "FILTER_TID": tid or 0, "LABEL_BY": label_by,
               "UNIT_DIV": 1000000 if milliseconds else 1000, "OFF_CPU": offcpu}
    prog = Program.from_file("cpudist", defines=defines)
    return HistogramTool(prog, unit="msecs" if milliseconds else "usecs")


@click.command("cpudist", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@click.option("-O", "--offcpu", is_flag=True, help="Measure off-CPU time instead.")
@histogram_tool_options
def command(offcpu, timestamp, milliseconds, per_pid, per_tid, pid, tid, duration, interval,
            out, args):
    """Summarize on-CPU time per task as a histogram.

    ARGS: [interval [count]] and/or -- COMMAND to run and trace.
    """
    pos_interval, count, cmd = options.split_interval_count(args)
    if per_pid and per_tid:
        raise click.UsageError("give only one of -P, -L")
    label_by = 1 if per_pid else 2 if per_tid else 0
    target = Target.from_options(pid, cmd)
    try:
        tool = start(pid=target.pid, tid=tid or 0, milliseconds=milliseconds,
                     label_by=label_by, offcpu=offcpu)
        run_histogram_tool(tool, target,
                           message=f"Tracing {'off' if offcpu else 'on'}-CPU time... "
                                   "Hit Ctrl-C to end.",
                           section={0: None, 1: "pid", 2: "tid"}[label_by], show_name=True,
                           out=out, stamp=timestamp, duration=duration,
                           interval=interval or pos_interval, count=count,
                           extra={"offcpu": offcpu},
                           unseen=f"{'off' if offcpu else 'on'}-CPU periods")
    finally:
        target.finish()

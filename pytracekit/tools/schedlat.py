"""schedlat: per-task scheduling latency like `perf sched latency`.

For each task: run time, times switched in, and the average and maximum
delay from becoming runnable (woken, or preempted) to running; sorted by
maximum delay, largest first. With -i/--interval, a table every SECONDS
covering only that interval: a delay or a run that spans a boundary counts
in the interval where it ends.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..families.intervals import entries, run_interval_tables, stamped
from ..engine.loader import Program
from ..families.periodic import BpfTool, attached, command_only
from ..families.sched import report_loss
from ..engine.runner import Target
from ..textsafe import cstr

DRY_RUN_ARGS: list[str] = []
SORT_KEYS = {"max": lambda t: t.max_delay_ns, "avg": lambda t: t.avg_delay_ns,
             "runtime": lambda t: t.runtime_ns, "switch": lambda t: t.switches}
RULE = "-" * 98


@dataclass
class TaskLatency:
    tid: int
    pid: int
    comm: str
    runtime_ns: int
    switches: int
    delays: int
    delay_total_ns: int
    max_delay_ns: int
    max_delay_at: float      # seconds since boot (CLOCK_MONOTONIC) when it ended

    @property
    def avg_delay_ns(self) -> float:
        return self.delay_total_ns / self.delays if self.delays else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"type": "task", "comm": self.comm, "pid": self.pid, "tid": self.tid,
                "runtime_ms": self.runtime_ns / 1e6, "switches": self.switches,
                "delays": self.delays, "avg_delay_ms": self.avg_delay_ns / 1e6,
                "max_delay_ms": self.max_delay_ns / 1e6, "max_delay_at": self.max_delay_at}


@dataclass
class Schedlat(BpfTool):

    def read(self, clear: bool = False) -> list[TaskLatency]:
        """Per task; with clear, since the last clearing read (the in-flight
        runnable_since/exec_base maps are never cleared)."""
        rows = []
        for key, st in entries(self.prog["stats"], clear):
            rows.append(TaskLatency(key.value, st.tgid, cstr(st.comm),
                                    st.runtime_ns, st.switches, st.delays, st.delay_total_ns,
                                    st.delay_max_ns, st.delay_max_at_ns / 1e9))
        return rows



def start(*, pid: int = 0, **_: Any) -> Schedlat:
    return Schedlat(Program.from_file("schedlat", defines={"FILTER_PID": pid or 0}))


def render(rows: list[TaskLatency], sort: str = "max", limit: int | None = None) -> str:
    """The table as perf sched latency lays it out."""
    ordered = sorted(rows, key=lambda t: (-SORT_KEYS[sort](t), t.tid))[:limit]
    out = [f" {RULE}",
           "  Task                  |   Runtime ms  | Switches | Avg delay ms    |"
           " Max delay ms    | Max delay at     |",
           f" {RULE}"]
    for t in ordered:
        task = f"{t.comm}:{t.tid}"
        out.append(f"  {task:<22}|{t.runtime_ns / 1e6:11.3f} ms |{t.switches:9} | "
                   f"avg:{t.avg_delay_ns / 1e6:9.3f} ms | max:{t.max_delay_ns / 1e6:9.3f} ms | "
                   f"{t.max_delay_at:13.6f} s |")
    out.append(f" {RULE}")
    total_rt = sum(t.runtime_ns for t in rows)
    total_sw = sum(t.switches for t in rows)
    out.append(f"  TOTAL:                |{total_rt / 1e6:11.3f} ms |{total_sw:9} |")
    out.append(f" {'-' * 50}")
    return "\n".join(out)


@click.command("schedlat", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-s", "--sort", type=click.Choice(sorted(SORT_KEYS)), default="max",
              show_default=True, help="Sort tasks by this column.")
@click.option("-n", "--top", "limit", type=click.IntRange(min=1), default=None,
              help="Print only this many tasks.")
@options.duration_option("-d")
@options.interval_option("-i")
@options.output_options()
@options.standard
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(pid, sort, limit, duration, interval, out, command):
    """Per-task switches, run time and wake-up-to-run delay (perf sched latency)."""
    cmd = command_only(command, "schedlat")
    target = Target.from_options(pid, cmd)
    with attached(target, lambda: start(pid=target.pid),
                  "Tracing scheduler latency... Hit Ctrl-C to end.") as tool:
        def print_table(stamp: dict[str, Any]) -> None:
            rows = tool.read(clear=True)
            ordered = sorted(rows, key=lambda t: (-SORT_KEYS[sort](t), t.tid))[:limit]
            out.emit(text=lambda: render(rows, sort, limit),
                     json=lambda: [stamped(t.as_dict(), stamp) for t in ordered])
        run_interval_tables(target, print_table, duration=duration, interval=interval,
                            out=out)
        report_loss(out, tool.prog, tool.loss(), "runs or delays")

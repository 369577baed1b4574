"""timehist: one line per run of a task, like `perf sched timehist`: when it
was switched out, on which CPU, how long it waited before the run, how much
of that wait was scheduling delay (woken, not yet running), how long it ran."""
from __future__ import annotations

import click

from ..cli import options
from ..collect import schedtimes
from ..families import event_tools
from ..errors import UsageError
from ..engine.runner import Target

DRY_RUN_ARGS: list[str] = []
NAME_WIDTH = 30


def header(show_state: bool) -> str:
    state = ("  state", "       ", "  -----") if show_state else ("", "", "")
    return "\n".join([
        f"{'time':>15} {'cpu':>6}  {'task name':<{NAME_WIDTH}}  {'wait time':>9}  "
        f"{'sch delay':>9}  {'run time':>9}{state[0]}",
        f"{'':>15} {'':6}  {'[tid/pid]':<{NAME_WIDTH}}  {'(msec)':>9}  {'(msec)':>9}  "
        f"{'(msec)':>9}{state[1]}",
        f"{'-' * 15} {'-' * 6}  {'-' * NAME_WIDTH}  {'-' * 9}  {'-' * 9}  {'-' * 9}{state[2]}"])


def task_name(s: schedtimes.Switch) -> str:
    """perf's `comm[tid/pid]`, `comm[pid]` for a process's main thread."""
    ids = str(s.tid) if s.tid == s.pid else f"{s.tid}/{s.pid}"
    return f"{s.comm}[{ids}]"


def line(s: schedtimes.Switch, show_state: bool) -> str:
    delay = f"{s.delay_ns / 1e6:9.3f}" if s.wakeup_seen else f"{'-':>9}"
    text = (f"{s.ts_ns / 1e9:15.6f} [{s.cpu:04d}]  {task_name(s):<{NAME_WIDTH}}  "
            f"{s.wait_ns / 1e6:9.3f}  {delay}  {s.run_ns / 1e6:9.3f}")
    return text + f"  {s.state:>5}" if show_state else text


def json_object(s: schedtimes.Switch) -> dict:
    obj = {"time_s": round(s.ts_ns / 1e9, 9), "cpu": s.cpu, "pid": s.pid, "tid": s.tid,
           "comm": s.comm, "wait_ms": round(s.wait_ns / 1e6, 6),
           "sch_delay_ms": round(s.delay_ns / 1e6, 6) if s.wakeup_seen else None,
           "run_ms": round(s.run_ns / 1e6, 6),
           "wait_state": s.wait_state, "state": s.state}
    unseen = [name for name, seen in (("switch_in", s.start_seen), ("wakeup", s.wakeup_seen))
              if not seen]
    if unseen:      # only then: what no tracepoint reported (bpf/timehist.bpf.c)
        obj["unseen"] = unseen
    return obj


@click.command("timehist", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("--state", "show_state", is_flag=True,
              help="Also show the state each run ended in (R preempted, S, D, ...).")
@options.duration_option("-d")
@event_tools.buffer_option("-b")
@options.output_options()
@options.standard
@options.command_argument
def command(pid, tid, show_state, duration, buffer_pages, out, command):
    """Each run of a task with its wait, scheduling delay and run time, like perf sched timehist.

    One line at each switch-out: time, cpu, task name[tid/pid], the wait
    before the run, the part of that wait after its wakeup ("-" when the
    wakeup was not traced), and the run (ms)."""
    if tid is not None and tid <= 0:
        raise UsageError(f"-t/--tid {tid} is not a thread id (a positive number)")

    def lines(rows: list[tuple]) -> list[str]:
        return [line(s, show_state) for s in map(schedtimes.record, rows)]

    def objects(rows: list[tuple]) -> list[dict]:
        return [json_object(s) for s in map(schedtimes.record, rows)]

    target = Target.from_options(pid, command)
    try:
        with schedtimes.start(target, tid=tid or 0, buffer_pages=buffer_pages) as events:
            event_tools.run(events, target,
                       event_tools.Printer(out, header(show_state), lines, objects),
                       duration=duration, message="Tracing scheduler switches")
    finally:
        target.finish()

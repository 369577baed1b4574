"""pidpersec: new processes (and threads: every fork and clone) per second, from
sched:sched_process_fork, as BCC's pidpersec prints them (`HH:MM:SS: PIDs/sec: N`)."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..engine.loader import Program
from ..families import summary
from ..families.periodic import run_periodic, timestamp
from ..engine.runner import Target, announce
from ..engine.session import ProgramSession

DRY_RUN_ARGS: list[str] = []


class Forks(ProgramSession):
    """The loaded program; read() is the running total of new tasks."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    def read(self) -> int:
        return sum(sum(value) for value in self.prog["forks"].values())


def start(*, pid: int = 0) -> Forks:
    return Forks(Program.from_file("pidpersec", defines={"FILTER_PID": pid or 0}))


def rate_text(count: int, seconds: float, interval: float) -> str:
    """New tasks in the interval; per second when the interval is not one second."""
    if interval == 1:
        return str(count)
    return f"{count / seconds:.1f}" if seconds > 0 else "0"


@click.command("pidpersec", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.output_options()
@options.standard
@options.command_argument
def command(pid, interval, duration, out, command):
    """Count new processes and threads per second: HH:MM:SS: PIDs/sec: N."""
    interval, intervals, command = summary.interval_and_count(command, interval, None)
    interval = interval or 1.0   # BCC: every second
    target = Target.from_options(pid, command)
    try:
        forks = start(pid=target.pid)
        try:
            forks.prog.ready()
            announce("Tracing... Ctrl-C to end.")
            last = {"total": 0, "at": time.monotonic()}

            def report() -> None:
                total, now = forks.read(), time.monotonic()
                count, seconds = total - last["total"], now - last["at"]
                last.update(total=total, at=now)
                out.emit(text=lambda: f"{timestamp()}: PIDs/sec: "
                                      f"{rate_text(count, seconds, interval)}",
                         json=lambda: {"type": "interval", "time": timestamp(), "count": count,
                                       "seconds": round(seconds, 3),
                                       "per_sec": round(count / seconds, 3) if seconds > 0 else 0})

            run_periodic(target, report=lambda _final: report(), duration=duration,
                         interval=interval, count=intervals)
            out.loss(forks.loss())
        finally:
            forks.close()
    finally:
        target.finish()

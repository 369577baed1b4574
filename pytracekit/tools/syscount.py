"""syscount: count system calls, by syscall or by process, with latency and
error filters (BCC's syscount options and output), aggregated in the kernel."""
from __future__ import annotations

import time
from dataclasses import dataclass

import click

from ..engine import follow
from ..cli import options
from ..families import summary
from ..kernel import syscalls
from ..errors import UsageError
from ..engine.loader import Program
from ..collect.mapdrain import drained
from ..engine.runner import Target, announce
from ..families.periodic import run_periodic
from ..textsafe import cstr
from ..engine.session import ProgramSession

DRY_RUN_ARGS = ["-L"]


@dataclass(frozen=True)
class Row:
    key: tuple                 # (syscall name, nr) or (pid, comm)
    count: int
    total_ns: int


class Counter(ProgramSession):
    def __init__(self, prog: Program, by_process: bool) -> None:
        self.prog, self.by_process = prog, by_process

    def read(self) -> list[Row]:
        rows = []
        for k, v in self.prog["stats"].items():
            if self.by_process:
                key = (k.id, cstr(k.comm))
            else:
                key = (syscalls.name(k.id), k.id)
            rows.append(Row(key, v.count, v.total_ns))
        return rows


def start(target: Target, *, tid: int | None = None, by_process: bool = False,
          latency: bool = False, failures: bool = False, errno: int = 0,
          syscall: str | None = None) -> Counter:
    defines = {"BY_PROCESS": by_process, "LATENCY": latency, "FAILED_ONLY": failures,
               "FILTER_ERRNO": errno, "FILTER_TID": tid or 0,
               "FILTER_SYSCALL": syscalls.number(syscall) if syscall else -1}
    prog = follow.load("syscount", target, defines)
    prog.ready()
    return Counter(prog, by_process)


def table(rows: list[Row], *, by_process: bool, latency: bool, milliseconds: bool,
          top: int) -> str:
    """BCC syscount's layout."""
    ordered = sorted(rows, key=lambda r: (-(r.total_ns if latency else r.count), r.key))[:top]
    name = "PID    COMM" if by_process else "SYSCALL"
    unit = "TIME (ms)" if milliseconds else "TIME (us)"
    lines = [f"{name:<22} {'COUNT':>8}" + (f" {unit:>16}" if latency else "")]
    for r in ordered:
        label = f"{r.key[0]:<6d} {r.key[1]:<15}" if by_process else str(r.key[0])
        line = f"{label:<22} {r.count:>8d}"
        if latency:
            line += f" {r.total_ns / (1e6 if milliseconds else 1e3):>16.3f}"
        lines.append(line)
    return "\n".join(lines)


def json_obj(rows: list[Row], *, by_process: bool, latency: bool, top: int) -> dict:
    ordered = sorted(rows, key=lambda r: (-(r.total_ns if latency else r.count), r.key))[:top]
    out = []
    for r in ordered:
        row = {"pid": r.key[0], "comm": r.key[1]} if by_process else \
            {"syscall": r.key[0], "nr": r.key[1]}
        row["count"] = r.count
        if latency:
            row["total_ns"] = r.total_ns
        out.append(row)
    return {"type": "syscalls", "time": time.strftime("%H:%M:%S"), "rows": out}


@click.command("syscount", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.tid_option("-t")
@options.interval_option("-i")
@options.duration_option("-d")
@click.option("-T", "--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Print only the top this many rows.")
@click.option("-x", "--failures", is_flag=True, help="Count only failed calls.")
@click.option("-e", "--errno", "errno_text", default=None,
              help="Count only calls that failed with this errno (ENOENT or 2).")
@click.option("-L", "--latency", is_flag=True, help="Collect time spent in each call.")
@click.option("-m", "--milliseconds", is_flag=True, help="Show times in ms (default us).")
@click.option("-P", "--process", "by_process", is_flag=True, help="Count by process, not syscall.")
@click.option("-l", "--list", "list_syscalls", is_flag=True, help="List known syscalls and exit.")
@click.option("--syscall", default=None, help="Count only this syscall (by name).")
@options.output_options()
@options.standard
@options.command_argument
def command(pid, tid, interval, duration, top, failures, errno_text, latency, milliseconds,
            by_process, list_syscalls, syscall, out, command):
    """Summarize system call counts and latencies."""
    if list_syscalls:
        for nr, name in sorted(syscalls.table().items()):
            click.echo(f"{nr:>4} {name}")
        return
    errno = syscalls.errno_number(errno_text) if errno_text else 0
    # BCC's syscount has only -i; `syscount 1 5` is taken as the other summary tools take it
    interval, count, command = summary.interval_and_count(command, interval, None)
    if tid and (pid or command):
        raise UsageError("give -t TID alone: it already names one thread")
    if tid:
        from ..engine.runner import check_pid
        check_pid(tid)
    target = Target.from_options(pid, command)
    counter = None
    try:
        counter = start(target, tid=tid, by_process=by_process, latency=latency,
                        failures=failures, errno=errno, syscall=syscall)
        what = "failed syscalls" if failures or errno else "syscalls"
        announce(f"Tracing {what}, printing top {top}... Ctrl+C to quit.")
        show = dict(by_process=by_process, latency=latency, top=top)

        def report() -> None:
            rows = counter.read()
            out.emit(text=lambda: [f"[{time.strftime('%H:%M:%S')}]",
                                   table(rows, milliseconds=milliseconds, **show), ""],
                     json=lambda: json_obj(rows, **show))

        def each(final: bool) -> None:
            with drained(counter.prog, [] if final else ["stats"]):
                report()

        run_periodic(target, duration=duration, interval=interval, count=count, report=each)
        out.loss(counter.loss())
    finally:
        if counter is not None:
            counter.close()
        target.finish()

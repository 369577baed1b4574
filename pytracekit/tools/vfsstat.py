"""vfsstat: file system calls per second in BCC's vfsstat columns (TIME READ/s
WRITE/s FSYNC/s OPEN/s CREATE/s), counted at the system-call level from the
syscalls:sys_enter_* tracepoints: BCC's vfs_read/vfs_write/vfs_fsync_range/
vfs_open/vfs_create need kprobes. See docs/tools/vfsstat.md for which calls
each column counts and how that differs from the VFS functions."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..engine.loader import Program
from ..errors import UsageError
from ..families.periodic import run_periodic, timestamp
from ..engine.runner import Target, announce
from ..engine.session import ProgramSession

DRY_RUN_ARGS: list[str] = []

KINDS = ("READ", "WRITE", "FSYNC", "OPEN", "CREATE")   # bpf/vfsstat.bpf.c's order
DEFAULT_INTERVAL = 1.0


class CallCounts(ProgramSession):
    """The loaded program; read() is the running total of calls per kind."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    def read(self) -> dict[str, int]:
        table = self.prog["stats"]
        return {kind: sum(table[table.Key(i)]) for i, kind in enumerate(KINDS)}


def start(*, pid: int = 0) -> CallCounts:
    return CallCounts(Program.from_file("vfsstat", defines={"FILTER_PID": pid or 0}))


def header() -> str:
    return "%-8s  " % "TIME" + "".join(" %8s" % f"{kind}/s" for kind in KINDS)


def row(now: str, rates: dict[str, float]) -> str:
    return "%-8s: " % now + "".join(" %8d" % rates[kind] for kind in KINDS)


@click.command("vfsstat", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED,
                metavar="[INTERVAL [COUNT]] | [-- COMMAND]")
def command(pid, interval, duration, out, words):
    """Count file system calls (read, write, fsync, open, create) per second."""
    pos_interval, count, command_words = options.split_interval_count(words)
    if pos_interval is not None and interval is not None:
        raise UsageError("give the interval once: positionally or with --interval")
    interval = interval or pos_interval or DEFAULT_INTERVAL
    target = Target.from_options(pid, command_words)
    try:
        calls = start(pid=target.pid)
        try:
            calls.prog.ready()
            announce("Tracing... Output every %g secs. Hit Ctrl-C to end" % interval)
            out.line(header())
            last = {"totals": dict.fromkeys(KINDS, 0), "at": time.monotonic()}

            def report(_final: bool) -> None:
                totals, now = calls.read(), time.monotonic()
                counts = {k: totals[k] - last["totals"][k] for k in KINDS}
                seconds = now - last["at"]
                last.update(totals=totals, at=now)
                # BCC divides by the interval; a last, shorter part by its own length
                per = interval if abs(seconds - interval) < interval / 2 else seconds
                out.emit(text=lambda: row(timestamp(), {k: counts[k] / per if per > 0 else 0
                                                         for k in KINDS}),
                         json=lambda: {"type": "interval", "time": timestamp(),
                                       "seconds": round(seconds, 3),
                                       **{k.lower(): counts[k] for k in KINDS}})

            run_periodic(target, duration=duration, interval=interval, count=count,
                         report=report)
            out.loss(calls.loss())
        finally:
            calls.close()
    finally:
        target.finish()

"""uthreads: threads started with pthread_create (BCC's uthreads for native and
Python threads): when, the new thread's id, the process and the thread's start
routine, symbolized (a Python thread starts in the interpreter's thread_run)."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..probes.specs import find_binary
from ..engine.runner import Target
from ..symbolize.symbols import Symbolizer

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("uthreads")   # struct event in bpf/uthreads.bpf.c


def start(*, pid: int = 0, libc: str | None = None,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    """`libc`: the C library whose pthread_create is probed (default: the
    one a process of this system loads, or `pid`'s)."""
    events = stream.EventStream(stream.load("uthreads", {"FILTER_PID": pid or 0}, buffer_pages),
                                FIELDS)
    try:
        path = libc or find_binary("c")
        events.prog.attach_uprobe(path, "on_pthread_create", symbol="pthread_create",
                                  pid=pid or -1)
        events.prog.attach_uprobe(path, "on_pthread_create_return", symbol="pthread_create",
                                  retprobe=True, pid=pid or -1)
    except BaseException:
        events.close()
        raise
    return events


def formatters(t0: int, symbols: Symbolizer):
    comms = stream.CStrings(16)

    def routine(address: int, pid: int) -> str:
        return symbols.user(address, pid).name

    def lines(rows: list[tuple]) -> list[str]:
        return [f"{(ts - t0) / 1e9:<8.3f} {pid:<7} {tid:<7} {comms[comm]} pthread  "
                f"{routine(address, pid)}"
                for ts, address, pid, tid, _creator, _pad, comm in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "creator_tid": creator, "comm": stream.cstr(comm), "type": "event",
                 "start_routine": routine(address, pid), "address": address}
                for ts, address, pid, tid, creator, _pad, comm in rows]
    return lines, objects


@click.command("uthreads", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@options.pid_option("-p")
@options.duration_option("-d")
@event_tools.stream_options
def command(pid, duration, buffer_pages, out, command):
    """Trace thread starts (pthread_create) with their start routine.

    Threads of a statically linked program are not seen (the probe is in libc)."""
    target = Target.from_options(pid, command)
    try:
        libc = find_binary("c", pid) if pid else None
        with start(pid=target.pid, libc=libc, buffer_pages=buffer_pages) as events:
            lines, objects = formatters(time.monotonic_ns(), Symbolizer())
            header = f"{'TIME':<8} {'PID':<7} {'TID':<7} {'COMM':<16} {'TYPE':<8} START"
            event_tools.run(events, target, event_tools.Printer(out, header, lines, objects),
                       duration=duration, message="Tracing thread starts... Hit Ctrl-C to end.")
    finally:
        target.finish()

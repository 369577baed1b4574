"""threadsnoop: every new thread (task:task_newtask with CLONE_THREAD), with the
start routine given to pthread_create, symbolized (BCC's columns: TIME(ms) PID
COMM FUNC). Threads made by a raw clone (no pthread_create in libc: static
binaries, Go) are shown too, their FUNC as [clone]."""
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

FIELDS = stream.layout("threadsnoop")   # struct event in bpf/threadsnoop.bpf.c
NO_PTHREAD = "[clone]"


def start(*, pid: int = 0, libc: str | None = None,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    """`libc`: the C library whose pthread_create is probed (default: the
    one a process of this system loads, or `pid`'s)."""
    events = stream.EventStream(stream.load("threadsnoop", {"FILTER_PID": pid or 0},
                                            buffer_pages), FIELDS)
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
        return symbols.user(address, pid).name if address else NO_PTHREAD

    def lines(rows: list[tuple]) -> list[str]:
        return [f"{(ts - t0) // 1_000_000:<10} {pid:<7} {comms[comm]} {routine(address, pid)}"
                for ts, address, pid, _tid, _creator, _pad, comm in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "creator_tid": creator, "comm": stream.cstr(comm),
                 "func": routine(address, pid), "address": address}
                for ts, address, pid, tid, creator, _pad, comm in rows]
    return lines, objects


@click.command("threadsnoop", context_settings={**options.TOOL_CONTEXT,
                                                "ignore_unknown_options": True})
@options.pid_option("-p")
@options.duration_option("-d")
@event_tools.stream_options
def command(pid, duration, buffer_pages, out, command):
    """Trace new threads with their start routine: TIME(ms) PID COMM FUNC."""
    target = Target.from_options(pid, command)
    try:
        libc = find_binary("c", pid) if pid else None
        with start(pid=target.pid, libc=libc, buffer_pages=buffer_pages) as events:
            lines, objects = formatters(time.monotonic_ns(), Symbolizer())
            header = f"{'TIME(ms)':<10} {'PID':<7} {'COMM':<16} FUNC"
            event_tools.run(events, target, event_tools.Printer(out, header, lines, objects),
                       duration=duration, message="Tracing new threads... Hit Ctrl-C to end.")
    finally:
        target.finish()

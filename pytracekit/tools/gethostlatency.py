"""gethostlatency: host name lookups through libc and their latency (BCC's columns).

uprobes on getaddrinfo, gethostbyname and gethostbyname2; see
bpf/gethostlatency.bpf.c.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..api import Tracer
from ..errors import NotFoundError
from ..render.text import UNREADABLE

DRY_RUN_ARGS: list[str] = []
FUNCTIONS = ("getaddrinfo", "gethostbyname", "gethostbyname2")

FIELDS = stream.layout("gethostlatency")   # struct event in bpf/gethostlatency.bpf.c

HEADER = "%-9s %-7s %-16s %10s %s" % ("TIME", "PID", "COMM", "LATms", "HOST")


class Lookups(stream.EventStream):
    """The event stream, with the tracer that owns program and target."""

    def __init__(self, tracer: Tracer) -> None:
        assert tracer.prog is not None
        super().__init__(tracer.prog, FIELDS)
        self.tracer = tracer

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        self.tracer.close()


def start(*, pid: int | None = None, command: tuple[str, ...] = (),
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> Lookups:
    pages = stream.check_buffer_pages(buffer_pages)
    tracer = Tracer(file="gethostlatency", pid=pid, command=command,
                    defines={"BUFFER_PAGES": pages,
                             "WAKEUP_BYTES": stream.wakeup_bytes(pages * stream.PAGE_SIZE)})
    try:
        found = []
        for function in FUNCTIONS:
            try:
                entries = tracer.resolve(f"c:{function}")
            except NotFoundError:
                continue          # a libc without it (gethostbyname2 is a GNU extension)
            found += entries
        if not found:
            raise NotFoundError("this libc has none of " + ", ".join(FUNCTIONS))
        # Returns first: a lookup entered before its return probe exists would
        # leave its thread's entry behind (overwritten by the next).
        for probe in found:
            tracer.probe(probe.returning(), "host_return")
        for probe in found:
            tracer.probe(probe, "host_entry")
        tracer.start()
    except BaseException:
        tracer.close()
        raise
    return Lookups(tracer)


def host_text(raw: bytes) -> str:
    host = stream.user_cstr(raw)
    return UNREADABLE if host is None else host


def text_lines(rows: list[tuple]) -> list[str]:
    return ["%-9s %-7d %-16s %10.2f %s" % (time.strftime("%H:%M:%S"), pid, stream.cstr(comm),
                                           latency / 1e6, host_text(host))
            for (_ts, latency, pid, _tid, _ret, _pad, comm, host) in rows]


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), "host": stream.user_cstr(host),
                 "lat_ms": round(latency / 1e6, 6)}
                for (ts, latency, pid, tid, _ret, _pad, comm, host) in rows]
    return objects


@click.command("gethostlatency", context_settings={**options.TOOL_CONTEXT,
                                                   "ignore_unknown_options": True})
@options.pid_option("-p")
@options.duration_option()
@event_tools.stream_options
def command(pid, duration, buffer_pages, out, command):
    """Show host name lookups (getaddrinfo, gethostbyname) with their latency, one line each."""
    lookups = start(pid=pid, command=command, buffer_pages=buffer_pages)
    printer = event_tools.Printer(out, HEADER, text_lines, json_formatter(time.monotonic_ns()))
    assert lookups.tracer.target is not None
    with lookups:
        event_tools.run(lookups, lookups.tracer.target, printer, duration=duration,
                   message="Tracing getaddrinfo/gethostbyname calls... Hit Ctrl-C to end.")

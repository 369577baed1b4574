"""fileslower: file reads and writes slower than a threshold, one line each (BCC's columns).

From the read/write system call tracepoints, the fd followed to its file (no
kprobes); see bpf/fileslower.bpf.c. BCC's positional MIN_MS (default 10).
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..cli.options import CommandAfterDashes, command_of

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("fileslower")   # struct event in bpf/fileslower.bpf.c

HEADER = "%-8s %-14s %-6s %1s %-7s %7s %s" % ("TIME(s)", "COMM", "TID", "D", "BYTES", "LAT(ms)",
                                             "FILENAME")


def start(*, pid: int = 0, min_ms: float = 10.0, all_files: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    prog = stream.load("fileslower", {"FILTER_PID": pid or 0, "MIN_NS": int(min_ms * 1e6),
                                      "ALL_FILES": all_files}, buffer_pages)
    return stream.EventStream(prog, FIELDS)


def name_of(raw: bytes) -> str:
    return stream.cstr(raw) or "[unnamed]"


def text_formatter(t0: int):
    def lines(rows: list[tuple]) -> list[str]:
        return ["%-8.3f %-14.14s %-6s %1s %-7s %7.2f %s" % (
            (ts - t0) / 1e9, stream.cstr(comm), tid, direction.decode(), nbytes, latency / 1e6,
            name_of(name))
            for (ts, latency, nbytes, _pid, tid, direction, _type, _pad, comm, name) in rows]
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), "direction": direction.decode(),
                 "file_type": kind.decode(), "bytes": nbytes, "lat_ms": round(latency / 1e6, 6),
                 "file": name_of(name)}
                for (ts, latency, nbytes, pid, tid, direction, kind, _pad, comm, name) in rows]
    return objects


@click.command("fileslower", cls=CommandAfterDashes, context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@click.option("-a", "--all-files", is_flag=True,
              help="Include non-regular files (sockets, pipes, devices).")
@click.argument("min_ms", metavar="[MIN_MS]", type=click.FloatRange(0, options.MAX_SECONDS * 1e3),
                required=False, default=10.0)
@options.duration_option()
@event_tools.buffer_option("-b")
@options.output_options()
@options.standard
@click.pass_context
def command(ctx, pid, all_files, min_ms, duration, buffer_pages, out):
    """Trace file reads and writes slower than MIN_MS (default 10), one line each."""
    t0 = time.monotonic_ns()
    event_tools.main(pid, command_of(ctx),
                lambda target_pid: start(pid=target_pid, min_ms=min_ms, all_files=all_files,
                                         buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, HEADER, text_formatter(t0), json_formatter(t0)),
                duration=duration,
                message=f"Tracing sync read/writes slower than {min_ms:g} ms")

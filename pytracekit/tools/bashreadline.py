"""bashreadline: print the command lines typed into interactive bash shells
(BCC's columns: TIME PID COMMAND), from a uretprobe on readline() in /bin/bash
(-s: a shared libreadline instead, for a bash linked against one)."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import NotFoundError

DRY_RUN_ARGS: list[str] = []

BASH = "/bin/bash"
FIELDS = stream.layout("bashreadline")   # struct event in bpf/bashreadline.bpf.c


def start(*, pid: int = 0, shared: str | None = None,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    events = stream.EventStream(stream.load("bashreadline", {"FILTER_PID": pid or 0},
                                            buffer_pages), FIELDS)
    binary = shared or BASH
    try:
        events.prog.attach_uprobe(binary, "on_readline_return", symbol="readline",
                                  retprobe=True, pid=pid or -1)
    except NotFoundError:
        events.close()
        hint = ("" if shared else ": this bash may use a shared libreadline; give it with "
                "-s (e.g. -s /lib/x86_64-linux-gnu/libreadline.so.8)")
        raise NotFoundError(f"no readline() in {binary}{hint}") from None
    except BaseException:
        events.close()
        raise
    return events


def formatters(t0: int):
    lines_of = stream.CStrings(0, decode=stream.user_text)

    def lines(rows: list[tuple]) -> list[str]:
        now = time.strftime("%H:%M:%S")
        return [f"{now:<9}{pid:<7} {lines_of[line]}" for _ts, pid, _tid, _comm, line in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), "command": stream.user_cstr(line)}
                for ts, pid, tid, comm, line in rows]
    return lines, objects


@click.command("bashreadline", context_settings={**options.TOOL_CONTEXT,
                                                 "ignore_unknown_options": True})
@click.option("-s", "--shared", default=None, metavar="LIB",
              help="Probe readline() in this shared library, not in /bin/bash.")
@options.pid_option("-p")
@options.duration_option("-d")
@event_tools.stream_options
def command(shared, pid, duration, buffer_pages, out, command):
    """Print commands typed into bash: TIME PID COMMAND."""
    def printer() -> event_tools.Printer:
        lines, objects = formatters(time.monotonic_ns())
        return event_tools.Printer(out, f"{'TIME':<9}{'PID':<7} COMMAND", lines, objects)

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, shared=shared,
                                         buffer_pages=buffer_pages),
                printer, duration=duration,
                message="Tracing bash commands... Hit Ctrl-C to end.")

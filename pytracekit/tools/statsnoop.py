"""statsnoop: trace stat()-family calls as they return (BCC's columns).

The same machinery as opensnoop (bpf/ptk_pathcall.h) on statfs, newstat,
newlstat, newfstatat and statx.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from . import opensnoop

DRY_RUN_ARGS: list[str] = []


def start(*, pid: int = 0, failed: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    return opensnoop.start(pid=pid, failed=failed, buffer_pages=buffer_pages,
                           program="statsnoop")


@click.command("statsnoop", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@options.timestamp_option("-t")
@click.option("-x", "--failed", is_flag=True, help="Only show failed stats.")
@options.pid_option("-p")
@options.duration_option("-d")
@event_tools.stream_options
def command(timestamp, failed, pid, duration, buffer_pages, out, command):
    """Trace stat() system calls: PID COMM FD ERR PATH, one line each."""
    def printer() -> event_tools.Printer:
        t0 = time.monotonic_ns()
        return event_tools.Printer(
            out, opensnoop.header(timestamp, False, False, False, pid_width=7),
            opensnoop.text_formatter(timestamp, False, False, False, t0, pid_width=7),
            opensnoop.json_formatter(t0, result="ret"))

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, failed=failed,
                                         buffer_pages=buffer_pages),
                printer, duration=duration, message="Tracing stat()s... Hit Ctrl-C to end.")

"""opensnoop: trace open()/openat()/openat2() as they return (BCC's columns).

Every filter is compiled into the BPF program; the output path decodes whole
batches and writes them with one write, so it keeps up with one process
opening as fast as it can.
"""
from __future__ import annotations

import os
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import UsageError

DRY_RUN_ARGS: list[str] = []


_ACCMODE = 3


def flag_mask(names: tuple[str, ...]) -> tuple[int, bool]:
    """-f O_WRONLY -f O_CREAT ...: (mask of "any of these flags", O_RDONLY asked)."""
    mask, rdonly = 0, False
    for name in names:
        upper = name.upper()
        if not upper.startswith("O_"):
            upper = "O_" + upper
        value = getattr(os, upper, None)
        if value is None:
            raise UsageError(f"unknown open flag {name!r} (try O_WRONLY, O_RDWR, O_CREAT, "
                             "O_TRUNC, O_APPEND, O_DIRECTORY, O_CLOEXEC ...)")
        if value == 0:
            rdonly = True
        mask |= value
    return mask, rdonly


def name_define(name: str | None) -> str:
    if not name:
        return '""'
    if len(name) > 15 or not name.isprintable() or '"' in name or "\\" in name:
        raise UsageError(f"-n {name!r}: a process name is at most 15 printable characters "
                         "without quotes or backslashes")
    return f'"{name}"'


def start(*, pid: int = 0, tid: int | None = None, uid: int | None = None,
          failed: bool = False, name: str | None = None, flags: tuple[str, ...] = (),
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES,
          program: str = "opensnoop") -> stream.EventStream:
    """Also statsnoop's core: both are bpf/ptk_pathcall.h with other tracepoints."""
    mask, rdonly = flag_mask(flags)
    defines = {"FILTER_PID": pid or 0, "FILTER_TID": tid or 0,
               "FILTER_UID": -1 if uid is None else uid, "FAILED_ONLY": failed,
               "FILTER_FLAGS": mask, "FILTER_RDONLY": rdonly, "FILTER_NAME": name_define(name)}
    return stream.EventStream(stream.load(program, defines, buffer_pages),
                              stream.layout(program))


def header(timestamp: bool, print_uid: bool, tid: bool, extended: bool,
           pid_width: int = 6) -> str:
    parts = []
    if timestamp:
        parts.append(f"{'TIME(s)':<14}")
    if print_uid:
        parts.append(f"{'UID':<6}")
    parts.append(f"{'TID' if tid else 'PID':<{pid_width}} {'COMM':<16} {'FD':>4} {'ERR':>3} ")
    if extended:
        parts.append(f"{'FLAGS':<9}")
    return "".join(parts) + "PATH"


def text_formatter(timestamp: bool, print_uid: bool, tid: bool, extended: bool, t0: int,
                   pid_width: int = 6):
    """BCC's opensnoop/statsnoop line: [TIME(s)] [UID] PID COMM FD ERR [FLAGS] PATH.
    Everything after the time is remembered per record (stream.LineMemo)."""
    comms, paths = stream.CStrings(16), stream.CStrings(decode=stream.user_text)

    def rest(fields: tuple) -> str:
        pid, thread, uid, ret, flags, _mode, comm, path = fields
        fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
        line = f"{thread if tid else pid:<{pid_width}} {comms[comm]} {fd:>4} {err:>3} "
        if extended:
            line += f"{flags:08o}  "
        if print_uid:
            line = f"{uid:<6}" + line
        return line + paths[path]

    memo = stream.LineMemo(rest)

    def lines(rows: list[tuple]) -> list[str]:
        if timestamp:
            return [f"{(row[0] - t0) / 1e9:<14.9f}" + memo[row[1:]] for row in rows]
        return [memo[row[1:]] for row in rows]
    return lines


def json_formatter(t0: int, result: str = "fd"):
    comms, paths = stream.CStrings(), stream.CStrings(decode=stream.user_cstr)

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid, "uid": uid,
                 "comm": comms[comm], result: ret if ret >= 0 else -1,
                 "err": -ret if ret < 0 else 0, "flags": flags, "path": paths[path]}
                for ts, pid, tid, uid, ret, flags, _mode, comm, path in rows]
    return objects


@click.command("opensnoop", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@options.timestamp_option("-T")
@click.option("-U", "--print-uid", is_flag=True, help="Print the UID column.")
@click.option("-x", "--failed", is_flag=True, help="Only show failed opens.")
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("-u", "--uid", type=int, default=None, help="Trace this UID only.")
@options.duration_option("-d")
@click.option("-n", "--name", default=None, help="Only process names containing NAME.")
@click.option("-e", "--extended-fields", "extended", is_flag=True, help="Show the FLAGS column.")
@click.option("-f", "--flag-filter", "flags", multiple=True,
              help="Only opens with this flag (O_WRONLY, O_CREAT ...); repeatable.")
@event_tools.stream_options
def command(timestamp, print_uid, failed, pid, tid, uid, duration, name, extended, flags,
            buffer_pages, out, command):
    """Trace open() system calls: PID COMM FD ERR PATH, one line each."""
    def printer() -> event_tools.Printer:
        t0 = time.monotonic_ns()
        return event_tools.Printer(out, header(timestamp, print_uid, bool(tid), extended),
                              text_formatter(timestamp, print_uid, bool(tid), extended, t0),
                              json_formatter(t0))

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, tid=tid, uid=uid, failed=failed,
                                         name=name, flags=flags, buffer_pages=buffer_pages),
                printer, duration=duration, message="Tracing open()s... Hit Ctrl-C to end.")

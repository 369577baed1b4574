"""execsnoop: trace exec()s, with BCC's columns (PCOMM PID PPID RET ARGS).

ARGS is the path that was executed followed by argv[1:] as it was passed, as
BCC prints it (for a script: not the interpreter's rewritten argv).
With `-- COMMAND` it traces the whole system while the command runs.
"""
from __future__ import annotations

import re
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import UsageError
from ..render.text import UNREADABLE

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("execsnoop")   # struct event in bpf/execsnoop.bpf.c


def start(*, uid: int | None = None, ppid: int | None = None, failed: bool = False,
          max_args: int = 20,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    if max_args < 1:
        raise UsageError(f"--max-args {max_args}: give at least 1")
    defines = {"FILTER_UID": -1 if uid is None else uid, "FILTER_PPID": ppid or 0,
               "FAILED_TOO": failed, "MAX_ARGS": max_args + 1}   # + argv[0]
    return stream.EventStream(stream.load("execsnoop", defines, buffer_pages), FIELDS)


UNREADABLE_ARGS = 2    # bit of `truncated`: an argument could not be read (bpf/execsnoop.bpf.c)


def argv_of(filename: bytes, args: bytes, args_len: int, truncated: int,
            max_args: int, argc: int = 0, from_user: bool = False
            ) -> tuple[list[str | None], bool]:
    """[executed path, argv[1], ...] and whether arguments were left out; None
    stands for a string that could not be read (not paged in).

    `args` is the new image's argument area (or, `from_user`, what a failed
    exec's caller passed); `argc` (0: not known) how many arguments the caller
    passed. An interpreter (#! script, binfmt_misc) replaces argv[0] with its
    own words, so the caller's argv[1:] are the area's last argc - 1 words."""
    words = args[:args_len].split(b"\0")
    if words and words[-1] == b"":
        words.pop()
    if argc and not truncated and argc <= len(words):
        words = words[len(words) - argc:]
    rest: list[str | None] = [stream.cstr(w) for w in words[1:]]
    if truncated & UNREADABLE_ARGS:
        rest.append(None)
    more = bool(truncated & 1) or len(rest) > max_args
    path = stream.user_cstr(filename) if from_user else stream.cstr(filename)
    return [path] + rest[:max_args], more


def _quote(arg: str) -> str:
    return '"' + arg.replace('"', '\\"') + '"'


class Selector:
    """BCC's -n (regex on the command name) and -l (regex on the arguments)."""

    def __init__(self, name: str | None, line: str | None) -> None:
        try:
            self.name = re.compile(name) if name else None
            self.line = re.compile(line) if line else None
        except re.error as exc:
            raise UsageError(f"bad regular expression {exc.pattern!r}: {exc}") from None

    def __call__(self, comm: str, argv: list[str | None]) -> bool:
        if self.name and not self.name.search(comm):
            return False
        return not self.line or any(self.line.search(a) for a in argv if a is not None)


def header(clock: bool, timestamp: bool, print_uid: bool) -> str:
    parts = []
    if clock:
        parts.append(f"{'TIME':<9}")
    if timestamp:
        parts.append(f"{'TIME(s)':<8}")
    if print_uid:
        parts.append(f"{'UID':<6}")
    return "".join(parts) + f"{'PCOMM':<16} {'PID':<7} {'PPID':<7} {'RET':>3} ARGS"


def formatters(*, clock: bool, timestamp: bool, print_uid: bool, quote: bool, max_args: int,
               select: Selector, t0: int):
    def decoded(rows: list[tuple]):
        for (ts, pid, ppid, uid, ret, args_len, truncated, argc, _pad, comm, filename,
             args) in rows:
            argv, more = argv_of(filename, args, args_len, truncated, max_args, argc,
                                 from_user=ret < 0)
            name = stream.cstr(comm)
            if select(name, argv):
                yield ts, pid, ppid, uid, ret, name, argv, more

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for ts, pid, ppid, uid, ret, name, argv, more in decoded(rows):
            argv = [UNREADABLE if a is None else a for a in argv]
            text = " ".join(_quote(a) for a in argv) if quote else " ".join(argv)
            line = f"{name:<16} {pid:<7} {ppid:<7} {ret:>3} {text}{' ...' if more else ''}"
            if print_uid:
                line = f"{uid:<6}" + line
            if timestamp:
                line = f"{(ts - t0) / 1e9:<8.3f}" + line
            if clock:
                line = f"{time.strftime('%H:%M:%S'):<9}" + line
            out.append(line)
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "ppid": ppid, "uid": uid,
                 "comm": name, "ret": ret, "filename": argv[0], "args": argv[1:],
                 "truncated": more}
                for ts, pid, ppid, uid, ret, name, argv, more in decoded(rows)]
    return lines, objects


@click.command("execsnoop", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@click.option("-T", "--time", "clock", is_flag=True, help="Include a time column (HH:MM:SS).")
@options.timestamp_option("-t")
@click.option("-x", "--fails", "failed", is_flag=True, help="Include failed exec()s.")
@click.option("-U", "--print-uid", is_flag=True, help="Print the UID column.")
@click.option("-u", "--uid", type=int, default=None, help="Trace this UID only.")
@click.option("-P", "--ppid", type=int, default=None, help="Only children of this parent pid.")
@click.option("-q", "--quote", is_flag=True, help='Put "quotes" around arguments.')
@click.option("-n", "--name", default=None, help="Only command names matching this regex.")
@click.option("-l", "--line", default=None, help="Only commands with an argument matching "
                                                 "this regex.")
@click.option("--max-args", type=click.IntRange(1, options.MAX_ARGS), default=20, show_default=True,
              help="Arguments parsed and shown.")
@options.duration_option("-d")
@event_tools.stream_options
def command(clock, timestamp, failed, print_uid, uid, ppid, quote, name, line, max_args, duration,
            buffer_pages, out, command):
    """Trace exec()s: PCOMM PID PPID RET ARGS, one line each."""
    select = Selector(name, line)

    def printer() -> event_tools.Printer:
        lines, objects = formatters(clock=clock, timestamp=timestamp, print_uid=print_uid,
                                    quote=quote, max_args=max_args, select=select,
                                    t0=time.monotonic_ns())
        return event_tools.Printer(out, header(clock, timestamp, print_uid), lines, objects)

    # No pid filter: with `-- COMMAND`, the whole system while the command runs.
    event_tools.main(None, command,
                lambda _pid: start(uid=uid, ppid=ppid, failed=failed, max_args=max_args,
                                   buffer_pages=buffer_pages),
                printer, duration=duration, message="Tracing exec()s... Hit Ctrl-C to end.")

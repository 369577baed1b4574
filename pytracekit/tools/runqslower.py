"""runqslower: trace run queue waits longer than a threshold (default 10 ms):
the task that waited, how long, and with -P the task that ran before it
(BCC's columns: TIME COMM TID LAT(us), -P: PREV COMM PREV TID)."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import UsageError

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("runqslower")   # struct event in bpf/runqslower.bpf.c
DEFAULT_MIN_US = 10000


def start(*, min_us: int = DEFAULT_MIN_US, pid: int = 0, tid: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"MIN_US": min_us, "FILTER_PID": pid or 0, "FILTER_TID": tid or 0}
    return stream.EventStream(stream.load("runqslower", defines, buffer_pages), FIELDS)


def min_us_and_command(words: tuple[str, ...]) -> tuple[int, tuple[str, ...]]:
    """BCC's optional `min_us` positional, then the command to run."""
    if words and words[0].isdigit():
        return int(words[0]), words[1:]
    if words and words[0].startswith("-"):
        raise UsageError(f"no such option: {words[0]} (see --help; a command to run goes "
                         "after --)")
    return DEFAULT_MIN_US, words


def header(previous: bool) -> str:
    prev = f"{'PREV COMM':<16} {'PREV TID':<8} " if previous else ""
    return f"{'TIME':<8} {'COMM':<16} {'TID':<7} {prev}{'LAT(us)':>14}"


def formatters(previous: bool, t0: int):
    comms = stream.CStrings(16)

    def lines(rows: list[tuple]) -> list[str]:
        now = time.strftime("%H:%M:%S")
        return [f"{now:<8} {comms[comm]} {tid:<7} "
                f"{f'{comms[prev_comm]} {prev_tid:<8} ' if previous else ''}{delta:>14}"
                for _ts, delta, _pid, tid, prev_tid, _pad, comm, prev_comm in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), "lat_us": delta, "prev_tid": prev_tid,
                 "prev_comm": stream.cstr(prev_comm)}
                for ts, delta, pid, tid, prev_tid, _pad, comm, prev_comm in rows]
    return lines, objects


@click.command("runqslower", context_settings={**options.TOOL_CONTEXT,
                                               "ignore_unknown_options": True})
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("-P", "--previous", is_flag=True,
              help="Also show the previous task's name and TID.")
@options.duration_option("-d")
@event_tools.buffer_option("-b")
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[MIN_US] [-- COMMAND]")
def command(pid, tid, previous, duration, buffer_pages, out, words):
    """Trace run queue waits over MIN_US microseconds: TIME COMM TID LAT(us).

    MIN_US defaults to 10000 (10 ms)."""
    min_us, command_words = min_us_and_command(words)
    if tid is not None and tid <= 0:
        raise UsageError(f"-t/--tid {tid} is not a thread id (a positive number)")

    def printer() -> event_tools.Printer:
        lines, objects = formatters(previous, time.monotonic_ns())
        return event_tools.Printer(out, header(previous), lines, objects)

    event_tools.main(pid, command_words,
                lambda target_pid: start(min_us=min_us, pid=target_pid, tid=tid or 0,
                                         buffer_pages=buffer_pages),
                printer, duration=duration,
                message=f"Tracing run queue latency higher than {min_us} us",
                unseen="run queue waits")

"""drsnoop: trace direct reclaims, tasks that had to free memory themselves
before their allocation could go on, with the time it took and the pages
freed (BCC's columns: COMM PID LAT(ms) PAGES). Besides global direct reclaim
(BCC's) it shows reclaim by a memory cgroup at its limit, in a TYPE column.
-v adds what the begin tracepoints give: the allocation's ORDER and GFP flags
(named as ftrace names them); BCC's -v FREE(KB) reads a kernel variable
(vm_zone_stat) that no tracepoint carries."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import UsageError
from ..kernel import tracefs

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("drsnoop")   # struct event in bpf/drsnoop.bpf.c
KINDS = {1: "direct", 2: "memcg"}


def start(*, pid: int = 0, tid: int = 0, uid: int | None = None,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "FILTER_TID": tid or 0,
               "FILTER_UID": -1 if uid is None else uid}
    return stream.EventStream(stream.load("drsnoop", defines, buffer_pages), FIELDS)


def header(timestamp: bool, uid: bool, by_tid: bool, verbose: bool = False) -> str:
    return ((f"{'TIME(s)':<14}" if timestamp else "") + (f"{'UID':<6}" if uid else "") +
            f"{'COMM':<14} {'TID' if by_tid else 'PID':<6} {'LAT(ms)':>8} {'PAGES':>5} " +
            (f"{'TYPE':<6} {'ORDER':>5} GFP" if verbose else "TYPE"))


def gfp_namer():
    """gfp_flags -> names, as ftrace prints them (the tracepoint's own table)."""
    try:
        table = tracefs.tracepoint("vmscan", "mm_vmscan_direct_reclaim_begin") \
            .flag_names("gfp_flags")
    except Exception:   # an older format: hex alone still says it all
        table = []
    cache: dict[int, str] = {}

    def name(flags: int) -> str:
        if flags not in cache:
            cache[flags] = tracefs.decode_flags(flags, table)
        return cache[flags]
    return name


def formatters(timestamp: bool, show_uid: bool, by_tid: bool, name: str | None, t0: int,
               verbose: bool = False):
    comms = stream.CStrings(0)
    gfp = gfp_namer()

    def wanted(comm: bytes) -> bool:
        return name is None or name in comms[comm]

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for ts, delta, pages, pid, tid, uid, kind, order, _pad, comm, gfp_flags in rows:
            if not wanted(comm):
                continue
            kind_name = KINDS.get(kind, str(kind))
            line = (f"{comms[comm][:14]:<14} {tid if by_tid else pid:<6} {delta / 1e6:>8.2f} "
                    f"{pages:>5} " +
                    (f"{kind_name:<6} {order:>5} {gfp(gfp_flags)}" if verbose else kind_name))
            if show_uid:
                line = f"{uid:<6}" + line
            if timestamp:
                line = f"{(ts - t0) / 1e9:<14.6f}" + line
            out.append(line)
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid, "uid": uid,
                 "comm": stream.cstr(comm), "lat_ms": round(delta / 1e6, 6), "pages": pages,
                 "order": order, "kind": KINDS.get(kind, str(kind)), "gfp_flags": gfp_flags,
                 "gfp": gfp(gfp_flags)}
                for ts, delta, pages, pid, tid, uid, kind, order, _pad, comm, gfp_flags in rows
                if wanted(comm)]
    return lines, objects


@click.command("drsnoop", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp (seconds).")
@click.option("-U", "--print-uid", "show_uid", is_flag=True, help="Print a UID column.")
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("-u", "--uid", type=click.IntRange(0, 2**32 - 2), default=None,
              help="Trace this UID only.")
@click.option("-n", "--name", default=None, help="Only processes whose name contains this.")
@click.option("-v", "extended", is_flag=True,
              help="Add the allocation's ORDER and GFP flags (what the tracepoints give).")
@options.duration_option("-d")
@event_tools.stream_options
def command(timestamp, show_uid, pid, tid, uid, name, extended, duration, buffer_pages, out,
            command):
    """Trace direct page reclaims: COMM PID LAT(ms) PAGES TYPE."""
    if tid is not None and tid <= 0:
        raise UsageError(f"-t/--tid {tid} is not a thread id (a positive number)")

    def printer() -> event_tools.Printer:
        lines, objects = formatters(timestamp, show_uid, tid is not None, name,
                                    time.monotonic_ns(), extended)
        return event_tools.Printer(out, header(timestamp, show_uid, tid is not None, extended),
                              lines, objects)

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, tid=tid or 0, uid=uid,
                                         buffer_pages=buffer_pages),
                printer, duration=duration,
                message="Tracing direct reclaim events... Hit Ctrl-C to end.")

"""compactsnoop: trace zone compactions with their latency and result (BCC's
columns: COMM PID NODE ZONE ORDER MODE LAT(ms) STATUS), from the compaction
tracepoints. The node and zone are found from the zone's first page frame in
/proc/zoneinfo; MODE is sync or async (the tracepoint does not tell
sync_light from sync). -e adds the pages the compaction tracepoints report
(BCC's -e reads watermarks through kprobes instead); -K the kernel stack at
the compaction's start."""
from __future__ import annotations

import re
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..collect.stack_maps import without_bpf_frames
from ..symbolize.symbols import Symbolizer

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("compactsnoop")   # struct event in bpf/compactsnoop.bpf.c
# -e: (column, JSON key) of each summed page count, in FIELDS order from PAGES_AT
PAGES_AT = FIELDS.names.index("migrate_scanned")
PAGES = (("MSCAN", "migrate_scanned"), ("MTAKEN", "migrate_taken"), ("FSCAN", "free_scanned"),
         ("FTAKEN", "free_taken"), ("MIGRATED", "migrated"), ("FAILED", "failed"))
# include/trace/events/mmflags.h: COMPACTION_STATUS
STATUS = {0: "not_suitable_zone", 1: "skipped", 2: "deferred", 3: "no_suitable_page",
          4: "continue", 5: "complete", 6: "partial_skipped", 7: "contended", 8: "success"}
_ZONE = re.compile(r"^Node (\d+), zone\s+(\S+)$")
_START = re.compile(r"^\s+start_pfn:\s+(\d+)$")


def zones(text: str) -> dict[int, tuple[int, str]]:
    """/proc/zoneinfo -> {start_pfn: (node, zone name)} (empty zones have none)."""
    out: dict[int, tuple[int, str]] = {}
    current = None
    for line in text.splitlines():
        m = _ZONE.match(line)
        if m:
            current = (int(m[1]), m[2])
            continue
        m = _START.match(line)
        if m and current is not None:
            out.setdefault(int(m[1]), current)
    return out


def read_zones() -> dict[int, tuple[int, str]]:
    try:
        with open("/proc/zoneinfo") as f:
            return zones(f.read())
    except OSError:
        return {}


def start(*, pid: int = 0, extended: bool = False, kernel_stack: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "EXTENDED": extended, "KERNEL_STACK": kernel_stack}
    return stream.EventStream(stream.load("compactsnoop", defines, buffer_pages), FIELDS)


def header(timestamp: bool, extended: bool = False) -> str:
    pages = "".join(f"{name:>9} " for name, _ in PAGES) if extended else ""
    return (f"{'TIME(s)':<14}" if timestamp else "") + \
        f"{'COMM':<14} {'PID':<6} {'NODE':>4} {'ZONE':>8} {'ORDER':>5} {'MODE':>5} " \
        f"{pages}{'LAT(ms)':>10} STATUS"


def formatters(timestamp: bool, t0: int, extended: bool = False, stack=None):
    """`stack(kernel_stack_hash) -> [frame names]` with -K, else None."""
    comms = stream.CStrings(0)
    known = read_zones()

    def zone_of(start_pfn: int) -> tuple[int | None, str]:
        if start_pfn not in known:
            known.update(read_zones())     # memory hot-plugged since
        return known.get(start_pfn, (None, f"pfn:{start_pfn:#x}"))

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for row in rows:
            ts, delta, zone_start, pid, _tid, order, status, sync, _pad, comm, _ks, _pad2, \
                khash = row[:PAGES_AT]
            node, zone = zone_of(zone_start)
            pages = "".join(f"{n:>9} " for n in row[PAGES_AT:]) if extended else ""
            line = (f"{comms[comm][:14]:<14} {pid:<6} {'?' if node is None else node:>4} "
                    f"{zone:>8} {order:>5} {'sync' if sync else 'async':>5} "
                    f"{pages}{delta / 1e6:>10.3f} {STATUS.get(status, status)}")
            if timestamp:
                line = f"{(ts - t0) / 1e9:<14.6f}" + line
            out.append(line)
            if stack is not None:
                out += [f"        {frame}" for frame in stack(khash)] + [""]
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for row in rows:
            ts, delta, zone_start, pid, tid, order, status, sync, _pad, comm, _ks, _pad2, \
                khash = row[:PAGES_AT]
            node, zone = zone_of(zone_start)
            obj = {"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                   "comm": stream.cstr(comm), "node": node, "zone": zone,
                   "zone_start_pfn": zone_start, "order": order,
                   "mode": "sync" if sync else "async", "lat_ms": round(delta / 1e6, 6),
                   "status": STATUS.get(status, str(status))}
            if extended:
                obj["pages"] = {key: n for (_, key), n in zip(PAGES, row[PAGES_AT:])}
            if stack is not None:
                obj["kernel_stack"] = stack(khash)
            out.append(obj)
        return out
    return lines, objects


@click.command("compactsnoop", context_settings={**options.TOOL_CONTEXT,
                                                 "ignore_unknown_options": True})
@click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp (seconds).")
@options.pid_option("-p")
@click.option("-e", "--extended-fields", "extended", is_flag=True,
              help="Pages scanned, isolated, migrated and failed in each compaction.")
@click.option("-K", "--kernel-stack", is_flag=True,
              help="Print the kernel stack of each compaction (under its line).")
@options.duration_option("-d")
@event_tools.stream_options
def command(timestamp, pid, extended, kernel_stack, duration, buffer_pages, out, command):
    """Trace zone compactions: COMM PID NODE ZONE ORDER MODE LAT(ms) STATUS."""
    opened: list[stream.EventStream] = []

    def open_stream(target_pid: int) -> stream.EventStream:
        opened.append(start(pid=target_pid, extended=extended, kernel_stack=kernel_stack,
                            buffer_pages=buffer_pages))
        return opened[0]

    def printer() -> event_tools.Printer:
        stack = None
        if kernel_stack:
            symbols = Symbolizer()
            symbols.kstacks = opened[0].prog["kstacks"]   # by hash (ptk_kstack.h)

            def stack(stack_hash: int) -> list[str]:
                frames = symbols.hashed_kernel_stack(stack_hash)
                return [f.name for f in without_bpf_frames(frames)]
        lines, objects = formatters(timestamp, time.monotonic_ns(), extended, stack)
        return event_tools.Printer(out, header(timestamp, extended), lines, objects)

    event_tools.main(pid, command, open_stream, printer, duration=duration,
                message="Tracing compact zone events... Hit Ctrl-C to end.")

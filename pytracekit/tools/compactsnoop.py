"""compactsnoop: trace zone compactions with their latency and result (BCC's
columns: COMM PID NODE ZONE ORDER MODE LAT(ms) STATUS), from the compaction
tracepoints. The node and zone are found from the zone's first page frame in
/proc/zoneinfo; MODE is sync or async (the tracepoint does not tell
sync_light from sync)."""
from __future__ import annotations

import re
import time

import click

from .. import options, stream

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.fields(("ts", "Q"), ("delta_ns", "Q"), ("zone_start", "Q"), ("pid", "I"),
                       ("tid", "I"), ("order", "i"), ("status", "i"), ("sync", "I"),
                       ("pad", "I"), ("comm", "16s"))
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


def start(*, pid: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    return stream.EventStream(stream.load("compactsnoop", {"FILTER_PID": pid or 0},
                                          buffer_pages), FIELDS)


def header(timestamp: bool) -> str:
    return (f"{'TIME(s)':<14}" if timestamp else "") + \
        f"{'COMM':<14} {'PID':<6} {'NODE':>4} {'ZONE':>8} {'ORDER':>5} {'MODE':>5} " \
        f"{'LAT(ms)':>10} STATUS"


def formatters(timestamp: bool, t0: int):
    comms = stream.CStrings(0)
    known = read_zones()

    def zone_of(start_pfn: int) -> tuple[int | None, str]:
        if start_pfn not in known:
            known.update(read_zones())     # memory hot-plugged since
        return known.get(start_pfn, (None, f"pfn:{start_pfn:#x}"))

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for ts, delta, zone_start, pid, _tid, order, status, sync, _pad, comm in rows:
            node, zone = zone_of(zone_start)
            line = (f"{comms[comm][:14]:<14} {pid:<6} {'?' if node is None else node:>4} "
                    f"{zone:>8} {order:>5} {'sync' if sync else 'async':>5} "
                    f"{delta / 1e6:>10.3f} {STATUS.get(status, status)}")
            if timestamp:
                line = f"{(ts - t0) / 1e9:<14.6f}" + line
            out.append(line)
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for ts, delta, zone_start, pid, tid, order, status, sync, _pad, comm in rows:
            node, zone = zone_of(zone_start)
            out.append({"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                        "comm": stream.cstr(comm), "node": node, "zone": zone,
                        "zone_start_pfn": zone_start, "order": order,
                        "mode": "sync" if sync else "async", "lat_ms": round(delta / 1e6, 6),
                        "status": STATUS.get(status, str(status))})
        return out
    return lines, objects


@click.command("compactsnoop", context_settings={**options.TOOL_CONTEXT,
                                                 "ignore_unknown_options": True})
@click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp (seconds).")
@options.pid_option("-p")
@options.duration_option("-d")
@stream.stream_options
def command(timestamp, pid, duration, buffer_pages, as_json, command):
    """Trace zone compactions: COMM PID NODE ZONE ORDER MODE LAT(ms) STATUS."""
    def printer() -> stream.Printer:
        lines, objects = formatters(timestamp, time.monotonic_ns())
        return stream.Printer(as_json, header(timestamp), lines, objects)

    stream.main(pid, command, lambda target_pid: start(pid=target_pid, buffer_pages=buffer_pages),
                printer, duration=duration,
                message="Tracing compact zone events... Hit Ctrl-C to end.")

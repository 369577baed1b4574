"""biosnoop: one line per block I/O with its latency (BCC's columns:
TIME(s) COMM PID DISK T SECTOR BYTES [P] [QUE(ms)] LAT(ms))."""
from __future__ import annotations

import time

import click

from ..kernel import block
from ..cli import options
from ..collect import stream
from ..families import event_tools

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("biosnoop")   # struct event in bpf/biosnoop.bpf.c


def start(*, disk: str | None = None, queued: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_DEV": block.disk_dev(disk) if disk else 0, "QUEUED": queued}
    return stream.EventStream(stream.load("biosnoop", defines, buffer_pages), FIELDS)


def direction(rwbs: str) -> str:
    """BCC's T column: W for writes, R for reads, else the first rwbs letter."""
    for letter in ("W", "R", "D"):
        if letter in rwbs:
            return letter
    return rwbs[:1] or "?"


def header(queued: bool, pattern: bool) -> str:
    text = f"{'TIME(s)':<11} {'COMM':<14} {'PID':<7} {'DISK':<9} {'T':<1} {'SECTOR':<10} {'BYTES':<7} "
    if pattern:
        text += "P "
    if queued:
        text += f"{'QUE(ms)':>7} "
    return text + f"{'LAT(ms)':>7}"


def formatters(*, queued: bool, pattern: bool, t0: int):
    comms, flags = stream.CStrings(), stream.CStrings()
    next_sector: dict[int, int] = {}      # per disk: where the last I/O ended

    def sequential(dev: int, sector: int, size: int) -> str:
        seq = next_sector.get(dev) == sector
        next_sector[dev] = sector + size // 512
        return "S" if seq else "R"

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for ts, latency, que, sector, pid, dev, size, _err, rwbs, comm in rows:
            line = (f"{(ts - t0) / 1e9:<11.6f} {comms[comm][:14]:<14} {pid:<7} "
                    f"{block.dev_name(dev):<9} {direction(flags[rwbs]):<1} {sector:<10} "
                    f"{size:<7} ")
            if pattern:
                line += sequential(dev, sector, size) + " "
            if queued:
                line += f"{que / 1e6:7.2f} "
            out.append(line + f"{latency / 1e6:7.2f}")
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "comm": comms[comm], "pid": pid,
                 "disk": block.dev_name(dev), "rwbs": flags[rwbs], "sector": sector,
                 "bytes": size, "error": err, "queued_ms": round(que / 1e6, 6),
                 "latency_ms": round(latency / 1e6, 6)}
                for ts, latency, que, sector, pid, dev, size, err, rwbs, comm in rows]
    return lines, objects


@click.command("biosnoop", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@click.option("-Q", "--queue", "queued", is_flag=True, help="Include OS queued time.")
@block.disk_option()
@click.option("-P", "--pattern", is_flag=True,
              help="Show the access pattern (S sequential, R random).")
@options.duration_option()
@event_tools.stream_options
def command(queued, disk, pattern, duration, buffer_pages, out, command):
    """Trace block I/O: one line per request with its latency."""
    def printer() -> event_tools.Printer:
        lines, objects = formatters(queued=queued, pattern=pattern, t0=time.monotonic_ns())
        return event_tools.Printer(out, header(queued, pattern), lines, objects)

    event_tools.main(None, command,
                lambda _pid: start(disk=disk, queued=queued, buffer_pages=buffer_pages),
                printer, duration=duration, message="Tracing block I/O... Hit Ctrl-C to end.")

"""tcplife: TCP sessions with their lifespan and bytes, when they close (BCC's columns).

From sock:inet_sock_set_state only (see bpf/tcplife.bpf.c for how the
process is attributed). TX_KB/RX_KB are whole KiB, as BCC prints them; the
JSON has exact bytes.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcplife")   # struct event in bpf/tcplife.bpf.c

COLUMNS = ("PID", "COMM", "LADDR", "LPORT", "RADDR", "RPORT", "TX_KB", "RX_KB", "MS")


def start(*, pid: int = 0, lports=(), rports=(), family: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    prog = tcp.load("tcplife", {"FILTER_PID": pid or 0}, buffer_pages=buffer_pages,
                    lports=lports, rports=rports, family=family)
    return stream.EventStream(prog, FIELDS)


def row_format(wide: bool, csv: bool) -> tuple[str, str]:
    if csv:
        return "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s", "%d,%s,%s,%s,%s,%s,%d,%d,%d,%.2f"
    if wide:
        return ("%-5s %-16.16s %-2s %-26s %-5s %-26s %-5s %6s %6s %s",
                "%-5d %-16.16s %-2s %-26s %-5s %-26s %-5d %6d %6d %.2f")
    return ("%-5s %-10.10s %s%-15s %-5s %-15s %-5s %5s %5s %s",
            "%-5d %-10.10s %s%-15s %-5d %-15s %-5d %5d %5d %.2f")


def text_formatter(prefix, wide: bool, csv: bool):
    _, fmt = row_format(wide, csv)
    show_ip = wide or csv

    def lines(rows: list[tuple]) -> list[str]:
        return [prefix(ts) + fmt % (
                    pid, stream.cstr(comm), tcp.ip_version(family) if show_ip else "",
                    tcp.address(family, laddr), lport, tcp.address(family, raddr), rport,
                    tx // 1024, rx // 1024, span / 1e6)
                for (ts, span, rx, tx, pid, _pad, comm, family, lport, rport, _p,
                     laddr, raddr) in rows]
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "comm": stream.cstr(comm),
                 **tcp.endpoints_obj(family, lport, rport, laddr, raddr),
                 "tx_bytes": tx, "rx_bytes": rx, "ms": round(span / 1e6, 6)}
                for (ts, span, rx, tx, pid, _pad, comm, family, lport, rport, _p,
                     laddr, raddr) in rows]
    return objects


@click.command("tcplife", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@tcp.layout_options
@options.pid_option("-p")
@tcp.ports_option("-L", "--localport", "local")
@tcp.ports_option("-D", "--remoteport", "remote")
@tcp.tool_options("-d")
def command(time_of_day, timestamp, wide, csv, pid, localport, remoteport, ipv4, ipv6,
            duration, buffer_pages, out, command):
    """Trace TCP sessions: PID COMM LADDR LPORT RADDR RPORT TX_KB RX_KB MS, one per close."""
    family = tcp.family_define(ipv4, ipv6)
    head, prefix = tcp.clock_prefix(time_of_day, timestamp, csv)
    header_fmt, _ = row_format(wide, csv)
    header = head + header_fmt % (*COLUMNS[:2], "IP" if wide or csv else "", *COLUMNS[2:])
    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, lports=localport, rports=remoteport,
                                         family=family, buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, header, text_formatter(prefix, wide, csv),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message="Tracing TCP sessions... Hit Ctrl-C to end.")

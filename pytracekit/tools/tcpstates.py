"""tcpstates: TCP state changes, with the time spent in each state (BCC's columns).

From sock:inet_sock_set_state. C-PID/C-COMM are the context the change ran
in: the process for changes its system calls make, else whoever the softirq
interrupted.
"""
from __future__ import annotations

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcpstates")   # struct event in bpf/tcpstates.bpf.c

COLUMNS = ("SKADDR", "C-PID", "C-COMM", "IP", "LADDR", "LPORT", "RADDR", "RPORT",
           "OLDSTATE", "NEWSTATE", "MS")


def start(*, lports=(), rports=(), family: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    prog = tcp.load("tcpstates", buffer_pages=buffer_pages, lports=lports, rports=rports,
                    family=family)
    return stream.EventStream(prog, FIELDS)


def row_format(wide: bool, csv: bool) -> tuple[str, str]:
    if csv:
        return "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s", "%x,%d,%s,%s,%s,%s,%s,%d,%s,%s,%.3f"
    if wide:
        return ("%-16s %-5s %-16.16s %-2s %-26s %-5s %-26s %-5s %-11s -> %-11s %s",
                "%-16x %-5d %-16.16s %-2s %-26s %-5s %-26s %-5d %-11s -> %-11s %.3f")
    return ("%-16s %-5s %-10.10s %s%-15s %-5s %-15s %-5s %-11s -> %-11s %s",
            "%-16x %-5d %-10.10s %s%-15s %-5d %-15s %-5d %-11s -> %-11s %.3f")


def text_formatter(prefix, wide: bool, csv: bool):
    _, fmt = row_format(wide, csv)
    show_ip = wide or csv

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for (ts, skaddr, span, pid, old, new, comm, family, lport, rport, _pad,
             laddr, raddr) in rows:
            out.append(prefix(ts) + fmt % (
                skaddr, pid, stream.cstr(comm), tcp.ip_version(family) if show_ip else "",
                tcp.address(family, laddr), lport, tcp.address(family, raddr), rport,
                tcp.state_name(old), tcp.state_name(new), span / 1e6))
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "skaddr": f"{skaddr:x}", "pid": pid,
                 "comm": stream.cstr(comm),
                 **tcp.endpoints_obj(family, lport, rport, laddr, raddr),
                 "oldstate": tcp.state_name(old), "newstate": tcp.state_name(new),
                 "ms": round(span / 1e6, 6)}
                for (ts, skaddr, span, pid, old, new, comm, family, lport, rport, _pad,
                     laddr, raddr) in rows]
    return objects


@click.command("tcpstates", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@tcp.layout_options
@tcp.ports_option("-L", "--localport", "local")
@tcp.ports_option("-D", "--remoteport", "remote")
@tcp.tool_options("-d")
def command(time_of_day, timestamp, wide, csv, localport, remoteport, ipv4, ipv6, duration,
            buffer_pages, out, command):
    """Trace TCP state changes: SKADDR C-PID C-COMM LADDR LPORT RADDR RPORT OLD -> NEW MS."""
    import time
    family = tcp.family_define(ipv4, ipv6)
    head, prefix = tcp.clock_prefix(time_of_day, timestamp, csv)
    header_fmt, _ = row_format(wide, csv)
    header = head + header_fmt % (*COLUMNS[:3], "IP" if wide or csv else "", *COLUMNS[4:])
    event_tools.main(None, command,
                lambda _pid: start(lports=localport, rports=remoteport, family=family,
                                   buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, header, text_formatter(prefix, wide, csv),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message="Tracing TCP state changes... Hit Ctrl-C to end.")

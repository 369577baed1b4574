"""tcpconnlat: how long active TCP opens take, SYN sent to ESTABLISHED (BCC's columns).

From sock:inet_sock_set_state alone (no kprobes); see bpf/tcpconnlat.bpf.c.
BCC's positional MIN_MS reports only connects at least that slow.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp
from ..cli.options import CommandAfterDashes, command_of

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcpconnlat")   # struct event in bpf/tcpconnlat.bpf.c


def start(*, pid: int = 0, min_ms: float = 0.0, ports=(), family: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "MIN_NS": int(min_ms * 1e6)}
    prog = tcp.load("tcpconnlat", defines, buffer_pages=buffer_pages, rports=ports,
                    family=family)
    return stream.EventStream(prog, FIELDS)


def header(timestamp: bool, lport: bool) -> str:
    head = f"{'TIME(s)':<9}" if timestamp else ""
    if lport:
        return head + "%-6s %-12s %-2s %-16s %-6s %-16s %-5s %s" % (
            "PID", "COMM", "IP", "SADDR", "LPORT", "DADDR", "DPORT", "LAT(ms)")
    return head + "%-6s %-12s %-2s %-16s %-16s %-5s %s" % (
        "PID", "COMM", "IP", "SADDR", "DADDR", "DPORT", "LAT(ms)")


def text_formatter(timestamp: bool, lport: bool):
    first: list[int] = []

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for (ts, latency, pid, _tid, comm, family, lp, rport, _p, laddr, raddr) in rows:
            line = ""
            if timestamp:
                first[:] = first or [ts]
                line += f"{(ts - first[0]) / 1e9:<9.3f}"
            saddr, daddr = tcp.address(family, laddr), tcp.address(family, raddr)
            ip, name, ms = tcp.ip_version(family), stream.cstr(comm), latency / 1e6
            if lport:
                line += "%-6d %-12.12s %-2d %-16s %-6d %-16s %-5d %.2f" % (
                    pid, name, ip, saddr, lp, daddr, rport, ms)
            else:
                line += "%-6d %-12.12s %-2d %-16s %-16s %-5d %.2f" % (
                    pid, name, ip, saddr, daddr, rport, ms)
            out.append(line)
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm),
                 **tcp.endpoints_obj(family, lport, rport, laddr, raddr),
                 "lat_ms": round(latency / 1e6, 6)}
                for (ts, latency, pid, tid, comm, family, lport, rport, _p, laddr,
                     raddr) in rows]
    return objects


@click.command("tcpconnlat", cls=CommandAfterDashes, context_settings=options.TOOL_CONTEXT)
@options.timestamp_option("-t")
@options.pid_option("-p")
@tcp.ports_option("-P", "--port", "destination")
@click.option("-L", "--lport", is_flag=True, help="Include the LPORT column.")
@click.argument("min_ms", metavar="[MIN_MS]", type=click.FloatRange(0, options.MAX_SECONDS * 1e3),
                required=False, default=0.0)
@tcp.family_options
@options.duration_option()
@event_tools.buffer_option("-b")
@options.output_options()
@options.standard
@click.pass_context
def command(ctx, timestamp, pid, port, lport, min_ms, ipv4, ipv6, duration, buffer_pages,
            out):
    """Trace TCP connect latency: PID COMM IP SADDR DADDR DPORT LAT(ms), one line each.

    With MIN_MS, only connects at least that slow."""
    family = tcp.family_define(ipv4, ipv6)
    event_tools.main(pid, command_of(ctx),
                lambda target_pid: start(pid=target_pid, min_ms=min_ms, ports=port,
                                         family=family, buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, header(timestamp, lport),
                                       text_formatter(timestamp, lport),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message="Tracing connect ... Hit Ctrl-C to end")

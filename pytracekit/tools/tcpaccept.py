"""tcpaccept: passive TCP connections (accept()), with BCC's options and columns.

From syscalls:sys_exit_accept/accept4, reading the new socket through the
caller's file table, so it runs without kprobes; see bpf/tcpaccept.bpf.c.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcpaccept")   # struct event in bpf/tcpaccept.bpf.c
ROW = "%-7s %-12.12s %-2s %-16s %-5s %-16s %-5s"


def start(*, pid: int = 0, ports=(), family: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    prog = tcp.load("tcpaccept", {"FILTER_PID": pid or 0}, buffer_pages=buffer_pages,
                    lports=ports, family=family)
    return stream.EventStream(prog, FIELDS)


def header(time_of_day: bool, timestamp: bool) -> str:
    head = f"{'TIME':<9}" if time_of_day else ""
    head += f"{'TIME(s)':<9}" if timestamp else ""
    return head + ROW % ("PID", "COMM", "IP", "RADDR", "RPORT", "LADDR", "LPORT")


def text_formatter(time_of_day: bool, timestamp: bool):
    first: list[int] = []

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for ts, pid, _tid, comm, family, lport, rport, _p, laddr, raddr in rows:
            line = f"{time.strftime('%H:%M:%S'):<9}" if time_of_day else ""
            if timestamp:
                first[:] = first or [ts]
                line += f"{(ts - first[0]) / 1e9:<9.3f}"
            line += ROW % (pid, stream.cstr(comm), tcp.ip_version(family),
                           tcp.address(family, raddr), rport, tcp.address(family, laddr), lport)
            out.append(line.rstrip())
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), **tcp.endpoints_obj(family, lport, rport, laddr, raddr)}
                for ts, pid, tid, comm, family, lport, rport, _p, laddr, raddr in rows]
    return objects


@click.command("tcpaccept", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@click.option("-T", "--time", "time_of_day", is_flag=True,
              help="Include a time column (HH:MM:SS).")
@options.timestamp_option("-t")
@options.pid_option("-p")
@tcp.ports_option("-P", "--port", "local")
@tcp.tool_options("-d")
def command(time_of_day, timestamp, pid, port, ipv4, ipv6, duration, buffer_pages, out,
            command):
    """Trace TCP accept()s: PID COMM IP RADDR RPORT LADDR LPORT, one line each."""
    family = tcp.family_define(ipv4, ipv6)
    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, ports=port, family=family,
                                         buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, header(time_of_day, timestamp),
                                       text_formatter(time_of_day, timestamp),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message="Tracing accept ... Hit Ctrl-C to end")

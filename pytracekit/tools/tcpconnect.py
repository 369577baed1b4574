"""tcpconnect: active TCP connections (connect()), with BCC's options and columns.

From sock:inet_sock_set_state (SYN_SENT) and syscalls:sys_exit_connect, so it
runs without kprobes; see bpf/tcpconnect.bpf.c. -c counts in the kernel and
prints a table at the end.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp
from ..render.output import Output
from ..errors import UsageError

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcpconnect")   # struct event in bpf/tcpconnect.bpf.c


def start(*, pid: int = 0, uid: int | None = None, ports=(), family: int = 0,
          count: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "FILTER_UID": -1 if uid is None else uid,
               "COUNT_MODE": count}
    prog = tcp.load("tcpconnect", defines, buffer_pages=buffer_pages, rports=ports,
                    family=family)
    return stream.EventStream(prog, FIELDS)


def header(timestamp: bool, print_uid: bool, lport: bool) -> str:
    head = f"{'TIME(s)':<9}" if timestamp else ""
    head += f"{'UID':<6}" if print_uid else ""
    if lport:
        return head + "%-7s %-12s %-2s %-16s %-6s %-16s %s" % (
            "PID", "COMM", "IP", "SADDR", "LPORT", "DADDR", "DPORT")
    return head + "%-7s %-12s %-2s %-16s %-16s %s" % ("PID", "COMM", "IP", "SADDR", "DADDR",
                                                        "DPORT")


def text_formatter(timestamp: bool, print_uid: bool, lport: bool):
    first: list[int] = []

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for (ts, pid, _tid, uid, _ret, comm, family, lp, rport, _p, laddr, raddr) in rows:
            line = ""
            if timestamp:
                first[:] = first or [ts]
                line += f"{(ts - first[0]) / 1e9:<9.3f}"
            if print_uid:
                line += f"{uid:<6d}"
            saddr, daddr = tcp.address(family, laddr), tcp.address(family, raddr)
            ip, name = tcp.ip_version(family), stream.cstr(comm)
            if lport:
                line += "%-7d %-12.12s %-2d %-16s %-6d %-16s %-6d" % (pid, name, ip, saddr, lp,
                                                                       daddr, rport)
            else:
                line += "%-7d %-12.12s %-2d %-16s %-16s %-6d" % (pid, name, ip, saddr, daddr,
                                                                  rport)
            out.append(line.rstrip())
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid, "uid": uid,
                 "comm": stream.cstr(comm),
                 **tcp.endpoints_obj(family, lport, rport, laddr, raddr), "ret": ret}
                for (ts, pid, tid, uid, ret, comm, family, lport, rport, _p, laddr,
                     raddr) in rows]
    return objects


def read_counts(prog) -> list[tuple[int, str, str, int, int]]:
    """(ip, laddr, raddr, rport, connects), most first."""
    rows = [(tcp.ip_version(k.family), tcp.address(k.family, bytes(k.laddr)),
             tcp.address(k.family, bytes(k.raddr)), k.rport, v.value)
            for k, v in prog["connects"].items()]
    return sorted(rows, key=lambda r: (-r[4], r[:4]))


def print_counts(prog, out: Output) -> None:
    rows = read_counts(prog)
    tcp.print_counts(
        prog, out,
        [{"ip": ip, "laddr": laddr, "raddr": raddr, "rport": rport, "count": n}
         for ip, laddr, raddr, rport, n in rows],
        "%-25s %-25s %-20s %s" % ("LADDR", "RADDR", "RPORT", "CONNECTS"),
        ["%-25s %-25s %-20s %d" % (laddr, raddr, rport, n) for _ip, laddr, raddr, rport, n in rows])


@click.command("tcpconnect", context_settings={**options.TOOL_CONTEXT,
                                               "ignore_unknown_options": True})
@options.timestamp_option("-t")
@options.pid_option("-p")
@tcp.ports_option("-P", "--port", "destination")
@click.option("-L", "--lport", is_flag=True, help="Include the LPORT column.")
@click.option("-U", "--print-uid", is_flag=True, help="Include the UID column.")
@click.option("-u", "--uid", type=int, default=None, help="Trace this UID only.")
@click.option("-c", "--count", is_flag=True, help="Count connects per flow; print at the end.")
@click.option("-d", "--dns", is_flag=True, hidden=True)
@tcp.tool_options()       # BCC's -d is --dns here: --duration has no short flag
def command(timestamp, pid, port, lport, print_uid, uid, count, dns, ipv4, ipv6, duration,
            buffer_pages, out, command):
    """Trace TCP connect()s: PID COMM IP SADDR DADDR DPORT, one line each."""
    if dns:
        raise UsageError("-d/--dns (BCC's DNS lookups) is not supported: tcpconnect reads no "
                         "packets; for a time limit use --duration SECONDS")
    family = tcp.family_define(ipv4, ipv6)

    def open_stream(target_pid: int) -> stream.EventStream:
        return start(pid=target_pid, uid=uid, ports=port, family=family, count=count,
                     buffer_pages=buffer_pages)
    message = "Tracing connect ... Hit Ctrl-C to end"
    if count:
        tcp.count_main(pid, command, open_stream, duration=duration, message=message,
                       report=lambda prog: print_counts(prog, out))
        return
    event_tools.main(pid, command, open_stream,
                lambda: event_tools.Printer(out, header(timestamp, print_uid, lport),
                                       text_formatter(timestamp, print_uid, lport),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message=message)

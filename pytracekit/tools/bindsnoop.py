"""bindsnoop: bind() calls on IPv4/IPv6 sockets with the socket's options (BCC's columns).

From syscalls:sys_enter_bind/sys_exit_bind and the socket found through the
caller's fd table (no kprobes); see bpf/bindsnoop.bpf.c. --count counts binds
per local address and port in the kernel and prints BCC's table at the end.
"""
from __future__ import annotations

import os
import socket
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..families import tcp
from ..render.output import Output
from ..engine.runner import Target, announce, run_until_done

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("bindsnoop")   # struct event in bpf/bindsnoop.bpf.c

# BCC's OPTS letters, bit 0 first: IP_FREEBIND, IP_TRANSPARENT,
# IP_BIND_ADDRESS_NO_PORT, SO_REUSEADDR, SO_REUSEPORT
OPT_LETTERS = "FTNRr"
PROTOCOLS = {getattr(socket, n): n[len("IPPROTO_"):] for n in dir(socket)
             if n.startswith("IPPROTO_") and n not in ("IPPROTO_IP", "IPPROTO_HOPOPTS")}


def opts_text(opts: int) -> str:
    return "".join(c if opts & (1 << i) else "." for i, c in enumerate(OPT_LETTERS))


def protocol_name(protocol: int) -> str:
    return PROTOCOLS.get(protocol, "UNKNOWN")


def start(*, pid: int = 0, uid: int | None = None, ports=(), errors: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES,
          count: bool = False) -> stream.EventStream:
    """`count`: no events, binds counted in the `counts` map (read_counts)."""
    defines = {"FILTER_PID": pid or 0, "FILTER_UID": -1 if uid is None else uid,
               "ERRORS": errors, "COUNT": count}
    prog = tcp.load("bindsnoop", defines, buffer_pages=buffer_pages, lports=ports)
    return stream.EventStream(prog, FIELDS)


def read_counts(prog) -> list[tuple[str, int, int, int]]:
    """(address, port, IP version, binds), most binds first, as BCC sorts them."""
    rows = [(tcp.address(k.family, bytes(k.laddr)), k.lport, tcp.ip_version(k.family),
             v.value) for k, v in prog["counts"].items()]
    return sorted(rows, key=lambda r: (-r[3], r[2], r[0], r[1]))


def count_text(rows: list[tuple[str, int, int, int]]) -> str:
    """BCC's --count table."""
    out = ["", ("%-32s %20s     %-10s" % ("LADDR", "LPORT", "BINDS")).rstrip()]
    out += [("%-32s %20s     %-10d" % (addr, port, binds)).rstrip()
            for addr, port, _ip, binds in rows]
    return "\n".join(out) + "\n"


def run_count(pid: int | None, command: tuple[str, ...], *, uid: int | None, ports, errors: bool,
              duration: float | None, out: Output) -> None:
    target = Target.from_options(pid, command)
    try:
        events = start(pid=target.pid, uid=uid, ports=ports, errors=errors, count=True)
        try:
            events.prog.ready()
            announce("Tracing binds ... Hit Ctrl-C to end")
            run_until_done(target, duration=duration)
            rows = read_counts(events.prog)
            out.emit(text=lambda: count_text(rows).splitlines(),
                     json=[{"type": "count", "addr": addr, "ip": ip, "port": port,
                            "binds": binds} for addr, port, ip, binds in rows])
            out.loss(events.loss())
        finally:
            events.close()
    finally:
        target.finish()


def formats(wide: bool) -> tuple[str, str, str]:
    """(header, row, RC column) formats: BCC's 80 columns, or wide for IPv6."""
    if wide:
        return ("%10s %-12.12s %-4s %-39s %-5s %5s %2s", "%10d %-12.12s %-4s %-39s %5d %-5s %2d",
                "%-25s ")
    return "%8s %-12.12s %-4s %-15s %-5s %5s %2s", "%8d %-12.12s %-4.4s %-15.15s %5d %-5s %2d", \
        "%3s "


def header(timestamp: bool, print_uid: bool, errors: bool, wide: bool) -> str:
    head_fmt, _, rc_fmt = formats(wide)
    head = "%-9s " % "TIME(s)" if timestamp else ""
    head += "%6s " % "UID" if print_uid else ""
    head += rc_fmt % "RC" if errors else ""
    return head + head_fmt % ("PID", "COMM", "PROT", "ADDR", "PORT", "OPTS", "IF")


def rc_text(ret: int, wide: bool) -> str:
    if not wide:
        return str(ret)
    return os.strerror(-ret) if ret else "Success"


def text_formatter(timestamp: bool, print_uid: bool, errors: bool, wide: bool):
    _, row_fmt, rc_fmt = formats(wide)
    first: list[int] = []

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for (ts, pid, uid, ret, dev, protocol, opts, _pad, comm, family, lport, _r, _p,
             laddr, _raddr) in rows:
            line = ""
            if timestamp:
                first[:] = first or [ts]
                line += "%-9.6f " % ((ts - first[0]) / 1e9)
            if print_uid:
                line += "%6d " % uid
            if errors:
                line += rc_fmt % rc_text(ret, wide)
            out.append(line + row_fmt % (pid, stream.cstr(comm), protocol_name(protocol),
                                         tcp.address(family, laddr), lport, opts_text(opts),
                                         dev))
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "uid": uid,
                 "comm": stream.cstr(comm), "ret": ret, "protocol": protocol_name(protocol),
                 "ip": tcp.ip_version(family), "addr": tcp.address(family, laddr),
                 "port": lport, "opts": opts_text(opts), "bound_dev_if": dev}
                for (ts, pid, uid, ret, dev, protocol, opts, _pad, comm, family, lport, _r, _p,
                     laddr, _raddr) in rows]
    return objects


@click.command("bindsnoop", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@options.timestamp_option("-t")
@click.option("-w", "--wide", is_flag=True, help="Wide columns (fit IPv6 addresses).")
@options.pid_option("-p")
@tcp.ports_option("-P", "--port", "bound")
@click.option("-E", "--errors", is_flag=True, help="Include failed binds, with RC.")
@click.option("-U", "--print-uid", is_flag=True, help="Include the UID column.")
@click.option("-u", "--uid", type=click.IntRange(0, 2**32 - 2), default=None,
              help="Trace this UID only.")
@click.option("--count", is_flag=True,
              help="Count binds per local address and port; print the table at the end.")
@options.duration_option()
@event_tools.stream_options
def command(timestamp, wide, pid, port, errors, print_uid, uid, count, duration, buffer_pages,
            out, command):
    """Trace bind()s of IPv4/IPv6 sockets: PID COMM PROT ADDR PORT OPTS IF, one line each.

    OPTS: F IP_FREEBIND, T IP_TRANSPARENT, N IP_BIND_ADDRESS_NO_PORT, R SO_REUSEADDR,
    r SO_REUSEPORT. --count: LADDR LPORT BINDS at the end instead."""
    if count:
        run_count(pid, command, uid=uid, ports=port, errors=errors, duration=duration,
                  out=out)
        return
    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, uid=uid, ports=port, errors=errors,
                                         buffer_pages=buffer_pages),
                lambda: event_tools.Printer(out, header(timestamp, print_uid, errors, wide),
                                       text_formatter(timestamp, print_uid, errors, wide),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message="Tracing binds ... Hit Ctrl-C to end")

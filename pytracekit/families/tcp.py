"""What the tcp tools share: loading with bpf/ptk_tcp.h, the endpoint
fields of their events, state names, address text and common options."""
from __future__ import annotations

import socket
import time
from typing import Any, Callable

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..engine.loader import Program
from ..engine.net import parse_ports
from ..render.output import Output
from ..engine.runner import Target, announce, run_until_done

# include/net/tcp_states.h
STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
          6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
          11: "CLOSING", 12: "NEW_SYN_RECV"}



def state_name(state: int) -> str:
    return STATES.get(state, str(state))


def address(family: int, raw: bytes) -> str:
    if family == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[:16])
    return socket.inet_ntop(socket.AF_INET, raw[:4])


def ip_version(family: int) -> int:
    return 6 if family == socket.AF_INET6 else 4


def family_define(ipv4: bool, ipv6: bool) -> int:
    if ipv4 and ipv6:
        raise click.UsageError("-4 and -6 exclude each other")
    return socket.AF_INET if ipv4 else socket.AF_INET6 if ipv6 else 0


def load(name: str, defines: dict[str, Any] | None = None, *,
         buffer_pages: int = stream.DEFAULT_BUFFER_PAGES, lports: tuple[int, ...] = (),
         rports: tuple[int, ...] = (), family: int = 0) -> Program:
    """Compile bpf/<name>.bpf.c (with bpf/ptk_tcp.h) and fill the port filter maps."""
    prog = stream.load(name, {**(defines or {}), "FILTER_FAMILY": family,
                              "FILTER_LPORTS": bool(lports), "FILTER_RPORTS": bool(rports)},
                       buffer_pages)
    try:
        for map_name, ports in (("wanted_lports", lports), ("wanted_rports", rports)):
            table = prog[map_name]
            for port in ports:
                table[table.Key(port)] = table.Leaf(1)
    except BaseException:
        prog.close()
        raise
    return prog


def ports_option(short: str, long: str, what: str) -> Callable:
    return click.option(short, long, metavar="PORTS", default=None,
                        callback=lambda _c, _p, v: parse_ports(v) if v else (),
                        help=f"Comma-separated list of {what} ports to trace.")


def family_options(f: Callable) -> Callable:
    f = click.option("-6", "--ipv6", is_flag=True, help="Trace IPv6 only.")(f)
    return click.option("-4", "--ipv4", is_flag=True, help="Trace IPv4 only.")(f)


def tool_options(*duration_short: str) -> Callable[[Callable], Callable]:
    """The options every tcp tool ends with: -4/-6, --duration (with the short
    flag the BCC tool leaves free), then the streaming tools' (-b, --json, the
    standard ones, `-- COMMAND`)."""
    def apply(f: Callable) -> Callable:
        return family_options(options.duration_option(*duration_short)(event_tools.stream_options(f)))
    return apply


def layout_options(f: Callable) -> Callable:
    """tcplife's and tcpstates's shared BCC flags: -T -t -w -s."""
    for decorate in reversed([
            click.option("-T", "--time", "time_of_day", is_flag=True,
                         help="Include a time column (HH:MM:SS)."),
            options.timestamp_option("-t"),
            click.option("-w", "--wide", is_flag=True, help="Wide columns (fit IPv6 addresses)."),
            click.option("-s", "--csv", is_flag=True, help="Comma-separated values.")]):
        f = decorate(f)
    return f


def clock_prefix(time_of_day: bool, timestamp: bool, csv: bool = False,
                 decimals: int = 6) -> tuple[str, Callable[[int], str]]:
    """BCC's optional leading columns: -T (HH:MM:SS) and -t (seconds since the
    first event). Returns the header text and a function of an event's ns."""
    first: list[int] = []
    sep = "," if csv else " "

    def prefix(ts_ns: int) -> str:
        out = ""
        if time_of_day:
            out += time.strftime("%H:%M:%S") + ("," if csv else " ")
        if timestamp:
            if not first:
                first.append(ts_ns)
            seconds = (ts_ns - first[0]) / 1e9
            out += f"{seconds:.{decimals}f}," if csv else f"{seconds:<9.{decimals}f} "
        return out
    head = ""
    if time_of_day:
        head += "TIME" + sep if csv else f"{'TIME':<8} "
    if timestamp:
        head += "TIME(s)" + sep if csv else f"{'TIME(s)':<9} "
    return head, prefix


def endpoints_obj(family: int, lport: int, rport: int, laddr: bytes, raddr: bytes) -> dict:
    """The JSON form of struct tcp_endpoints."""
    return {"ip": ip_version(family), "laddr": address(family, laddr), "lport": lport,
            "raddr": address(family, raddr), "rport": rport}


def count_main(pid: int | None, command: tuple[str, ...],
               open_stream: Callable[[int], stream.EventStream], *, duration: float | None,
               message: str, report: Callable[[Program], None]) -> None:
    """-c: the kernel counts until the duration ends, the command exits or
    Ctrl-C; then `report(prog)` prints the table once."""
    target = Target.from_options(pid, command)
    try:
        with open_stream(target.pid) as events:
            events.ready()
            announce(message)
            run_until_done(target, duration=duration)
            report(events.prog)
    finally:
        target.finish()


def print_counts(prog: Program, out: Output, objects: list[dict], header: str,
                 lines: list[str]) -> None:
    """A -c table (BCC's layout) or its JSON lines, then the losses."""
    out.emit(text=["\n" + header, *lines], json=[{"type": "count", **obj} for obj in objects])
    out.loss(prog.loss())

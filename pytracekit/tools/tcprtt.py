"""tcprtt: TCP smoothed round-trip times as a log2 histogram (BCC's options and layout).

From tcp:tcp_probe (each received segment of an established socket, with its
srtt), aggregated in the kernel; see bpf/tcprtt.bpf.c.
"""
from __future__ import annotations

import socket
import time

import click

from ..cli import options
from ..families import summary, tcp
from ..errors import UsageError
from ..model import Histogram
from ..render.output import Output

DRY_RUN_ARGS: list[str] = []

SECTIONS = {0: None, 1: "Local Address", 2: "Remote Address"}


def parse_address(text: str, what: str) -> tuple[int, bytes]:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            return family, socket.inet_pton(family, text)
        except OSError:
            pass
    raise UsageError(f"bad {what} {text!r}: give an IPv4 or IPv6 address, e.g. 10.0.0.1 or ::1")


def start(*, milliseconds: bool = False, by_addr: int = 0, lports=(), rports=(),
          laddr: str | None = None, raddr: str | None = None,
          family: int = 0) -> summary.Session:
    """read() -> {label: (Histogram, sum, count)}."""
    wanted = [parse_address(a, what) if a else None
              for a, what in ((laddr, "local address"), (raddr, "remote address"))]
    families = {w[0] for w in wanted if w}
    if len(families) > 1:
        raise UsageError("-a and -A name addresses of different families: give two IPv4 "
                         "or two IPv6 addresses")
    defines = {"BY_ADDR": by_addr, "UNIT_US": 1000 if milliseconds else 1,
               "FILTER_LADDR": bool(laddr), "FILTER_RADDR": bool(raddr)}
    prog = tcp.load("tcprtt", defines, lports=lports, rports=rports, family=family)
    try:
        if families:
            table = prog["wanted_addrs"]
            leaf = table.Leaf()
            leaf.family = families.pop()
            for field, want in zip(("laddr", "raddr"), wanted):
                if want:
                    getattr(leaf, field)[:len(want[1])] = list(want[1])
            table[table.Key(0)] = leaf
    except BaseException:
        prog.close()
        raise
    unit = "msecs" if milliseconds else "usecs"
    return summary.Session(prog, lambda p: read(p, unit, by_addr))


def read(prog, unit: str, by_addr: int) -> dict[str, tuple[Histogram, int, int]]:
    def label(key) -> str:
        return tcp.address(key.family, bytes(key.addr)) if by_addr else ""
    out: dict[str, tuple[Histogram, int, int]] = {}
    hists = {}
    for key, value in prog["hist"].items():
        hist = hists.setdefault(label(key), Histogram(unit=unit, label=label(key)))
        hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
    sums = {label(k): (v.total, v.count) for k, v in prog["sums"].items()}
    for name in sorted(hists):
        total, count = sums.get(name, (0, 0))
        out[name] = (hists[name], total, count)
    return out


def report(results: dict[str, tuple[Histogram, int, int]], *, by_addr: int, unit: str,
           extension: bool, out: Output, timestamp: bool) -> None:
    out.line()              # BCC: a blank line, then the time, before each report
    if timestamp:
        out.line(time.strftime("%H:%M:%S"))
    for name, (hist, total, count) in results.items():
        extra = {"time": time.strftime("%H:%M:%S"), "sum": total, "samples": count}
        summary.print_histograms({name: hist}, section=SECTIONS[by_addr], value_name=unit,
                                 out=out, timestamp=False, extra=extra)
        if extension:
            avg = total // count if count else 0
            out.line(f"avg = {avg} {unit}, total: {total} {unit}, count: {count}")


@click.command("tcprtt", context_settings={**options.TOOL_CONTEXT,
                                           "ignore_unknown_options": True})
@click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp on output.")
@click.option("-m", "--milliseconds", is_flag=True, help="Histogram in milliseconds.")
@tcp.ports_option("-p", "--lport", "local")
@tcp.ports_option("-P", "--rport", "remote")
@click.option("-a", "--laddr", default=None, help="Only this local address.")
@click.option("-A", "--raddr", default=None, help="Only this remote address.")
@click.option("-b", "--byladdr", is_flag=True, help="One histogram per local address.")
@click.option("-B", "--byraddr", is_flag=True, help="One histogram per remote address.")
@click.option("-e", "--extension", is_flag=True, help="Print the average, total and count too.")
@tcp.family_options
@options.interval_option("-i")
@options.duration_option("-d")
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED, metavar="[-- COMMAND]")
def command(timestamp, milliseconds, lport, rport, laddr, raddr, byladdr, byraddr, extension,
            ipv4, ipv6, interval, duration, out, words):
    """Summarize TCP smoothed RTT (srtt) as a histogram, per received segment."""
    if byladdr and byraddr:
        raise UsageError("-b (per local address) and -B (per remote address) exclude each other")
    by_addr = 1 if byladdr else 2 if byraddr else 0
    family = tcp.family_define(ipv4, ipv6)
    unit = "msecs" if milliseconds else "usecs"
    summary.main(words, interval, None, duration, out,
                 lambda: start(milliseconds=milliseconds, by_addr=by_addr, lports=lport,
                               rports=rport, laddr=laddr, raddr=raddr, family=family),
                 lambda session: report(session.read(), by_addr=by_addr, unit=unit,
                                        extension=extension, out=out,
                                        timestamp=timestamp),
                 clear=("hist", "sums"), message="Tracing TCP RTT... Hit Ctrl-C to end.")

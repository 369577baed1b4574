"""tcptop: TCP throughput per process and connection, every interval (BCC's layout).

From sock:sock_send_length / sock:sock_recv_length, summed in the kernel and
read-and-cleared every interval; see bpf/tcptop.bpf.c.
"""
from __future__ import annotations

import socket
import sys
import time

import click

from .. import options, summary, tcp
from ..render.jsonl import dumps
from ..runner import Stop, Target, announce, run_until_done

DRY_RUN_ARGS: list[str] = []
CLEAR_SCREEN = "\033[H\033[2J"


def start(*, pid: int = 0, family: int = 0) -> summary.Session:
    """read() -> rows (pid, comm, family, laddr, lport, raddr, rport, rx, tx), most first."""
    prog = tcp.load("tcptop", {"FILTER_PID": pid or 0}, family=family)
    return summary.Session(prog, read)


def read(prog) -> list[tuple]:
    rows = [(k.pid, k.comm.decode(errors="replace"), k.ep.family,
             tcp.address(k.ep.family, bytes(k.ep.laddr)), k.ep.lport,
             tcp.address(k.ep.family, bytes(k.ep.raddr)), k.ep.rport, v.rx, v.tx)
            for k, v in prog["flows"].items()]
    return sorted(rows, key=lambda r: (-(r[7] + r[8]), r[0], r[4], r[6]))


def text(rows: list[tuple], *, summary_line: bool) -> str:
    out = []
    if summary_line:
        with open("/proc/loadavg") as loadavg:
            out.append(f"{time.strftime('%H:%M:%S')} loadavg: {loadavg.read().strip()}\n")
    for family, width in ((socket.AF_INET, 21), (socket.AF_INET6, 32)):
        picked = [r for r in rows if r[2] == family]
        if not picked:
            continue
        suffix = "6" if family == socket.AF_INET6 else ""
        out.append("%-7s %-12s %-*s %-*s %6s %6s" % ("PID", "COMM", width, "LADDR" + suffix,
                                                    width, "RADDR" + suffix, "RX_KB", "TX_KB"))
        for pid, comm, _f, laddr, lport, raddr, rport, rx, tx in picked:
            out.append("%-7d %-12.12s %-*s %-*s %6d %6d" % (
                pid, comm, width, f"{laddr}:{lport}", width, f"{raddr}:{rport}",
                rx // 1024, tx // 1024))
        out.append("")
    return "\n".join(out) + "\n"


def objects(rows: list[tuple], stamp: dict) -> list[dict]:
    return [{"type": "flow", **stamp, "pid": pid, "comm": comm, "ip": tcp.ip_version(family),
             "laddr": laddr, "lport": lport, "raddr": raddr, "rport": rport,
             "rx_bytes": rx, "tx_bytes": tx}
            for pid, comm, family, laddr, lport, raddr, rport, rx, tx in rows]


@click.command("tcptop", context_settings={**options.TOOL_CONTEXT,
                                           "ignore_unknown_options": True})
@click.option("-C", "--noclear", is_flag=True, help="Don't clear the screen.")
@click.option("-S", "--nosummary", is_flag=True, help="Skip the system summary line.")
@options.pid_option("-p")
@tcp.family_options
@options.interval_option()
@summary.count_option()
@options.duration_option()
@options.json_option()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED,
                metavar="[INTERVAL [COUNT]] | [-- COMMAND]")
def command(noclear, nosummary, pid, ipv4, ipv6, interval, count, duration, as_json, words):
    """Summarize TCP send/receive throughput by process and connection, every interval."""
    family = tcp.family_define(ipv4, ipv6)
    interval, count, cmd = summary.interval_and_count(words, interval, count)
    interval = 1.0 if interval is None else interval      # BCC's default
    target = Target.from_options(pid, cmd)
    clear = not noclear and not as_json and sys.stdout.isatty()
    number = [0]

    def report(session: summary.Session) -> None:
        rows = session.read()
        number[0] += 1
        if as_json:
            stamp = {"time": time.strftime("%H:%M:%S"), "interval_no": number[0]}
            sys.stdout.write("".join(dumps(o) + "\n" for o in objects(rows, stamp)))
        else:
            sys.stdout.write((CLEAR_SCREEN if clear else "\n") +
                             text(rows, summary_line=not nosummary))
        sys.stdout.flush()

    try:
        with start(pid=target.pid, family=family) as session:
            session.ready()
            announce("Tracing... Output every %s secs. Hit Ctrl-C to end" % interval)
            reported = 0

            def tick() -> None:
                nonlocal reported
                report(session)
                session["flows"].clear()
                reported += 1
                if count and reported >= count:
                    raise Stop("count")
            run_until_done(target, duration=duration, interval=interval, on_interval=tick)
            if not (count and reported >= count):
                report(session)
            summary.report_loss(session.loss(), as_json)
    finally:
        target.finish()

"""tcptop: TCP throughput per process and connection, every interval (BCC's layout).

From sock:sock_send_length / sock:sock_recv_length, summed in the kernel and
read-and-cleared every interval; see bpf/tcptop.bpf.c.
"""
from __future__ import annotations

import socket

import click

from ..cli import options
from ..families import summary, tcp, toptable
from ..engine.runner import Target

DRY_RUN_ARGS: list[str] = []


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


def text(rows: list[tuple]) -> str:
    out = []
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
@options.pid_option("-p")
@tcp.family_options
@toptable.options_tail
def command(pid, ipv4, ipv6, noclear, nosummary, interval, count, duration, out, words):
    """Summarize TCP send/receive throughput by process and connection, every interval."""
    family = tcp.family_define(ipv4, ipv6)
    interval, count, cmd = toptable.interval_count_command(words, interval, count)
    target = Target.from_options(pid, cmd)
    number = [0]

    def report(session: summary.Session) -> None:
        rows = session.read()
        number[0] += 1
        out.emit(text=lambda: (toptable.prefix(clear=not noclear, loadavg=not nosummary) +
                               text(rows)).splitlines(),
                 json=lambda: objects(rows, toptable.stamp(number[0])))

    try:
        with start(pid=target.pid, family=family) as session:
            summary.run(session, target, lambda: report(session), interval=interval,
                        count=count, duration=duration, clear=("flows",),
                        message=f"Tracing... Output every {interval:g} secs. Hit Ctrl-C to end")
            out.loss(session.loss())
    finally:
        target.finish()

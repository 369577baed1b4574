"""tcpretrans: TCP retransmissions, with BCC's options and columns.

From tcp:tcp_retransmit_skb. -l adds tail loss probes, which have no
tracepoint: a kprobe on tcp_send_loss_probe, or fentry where kprobes are
missing, and a clear error on kernels with neither. -c counts per flow in the
kernel.
"""
from __future__ import annotations

import time

import click

from ..cli import options
from ..probes import specs as probes
from ..collect import stream
from ..families import event_tools
from ..families import tcp
from ..render.output import Output
from ..errors import NotSupportedError

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcpretrans")   # struct event in bpf/tcpretrans.bpf.c
KINDS = {1: "R", 2: "L"}
LOSS_PROBE_FUNCTION = "tcp_send_loss_probe"
ROW = "%-8s %-7s %-2s %-20s %1s> %-20s"


def start(*, loss_probes: bool = False, count: bool = False, family: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"COUNT_MODE": count, "LOSS_PROBE": loss_probes}
    probe = None
    if loss_probes:
        try:
            [probe] = probes.resolve(probes.parse_spec("p::" + LOSS_PROBE_FUNCTION))
        except NotSupportedError:
            raise NotSupportedError(f"-l needs a kprobe or fentry on {LOSS_PROBE_FUNCTION} "
                                    "(tail loss probes have no tracepoint) and this kernel has "
                                    "neither: run without -l") from None
        defines.update(probes.program_defines([(probe, "on_loss_probe")]))
    prog = tcp.load("tcpretrans", defines, buffer_pages=buffer_pages, family=family)
    if probe is not None:
        try:
            probe.attach(prog, "on_loss_probe")
        except BaseException:
            prog.close()
            raise
    return stream.EventStream(prog, FIELDS)


def header(sequence: bool) -> str:
    head = ROW % ("TIME", "PID", "IP", "LADDR:LPORT", "T", "RADDR:RPORT")
    return head + (" %-12s %s" % ("STATE", "SEQ") if sequence else " STATE")


def text_formatter(sequence: bool):
    def lines(rows: list[tuple]) -> list[str]:
        out = []
        now = time.strftime("%H:%M:%S")
        for _ts, pid, state, seq, kind, _pad, family, lport, rport, _p, laddr, raddr in rows:
            line = ROW % (now, pid, tcp.ip_version(family),
                          f"{tcp.address(family, laddr)}:{lport}", KINDS.get(kind, "?"),
                          f"{tcp.address(family, raddr)}:{rport}")
            line += (" %-12s %s" % (tcp.state_name(state), seq) if sequence
                     else " %s" % tcp.state_name(state))
            out.append(line)
        return out
    return lines


def json_formatter(t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid,
                 "kind": "loss_probe" if kind == 2 else "retransmit",
                 **tcp.endpoints_obj(family, lport, rport, laddr, raddr),
                 "state": tcp.state_name(state), "seq": seq}
                for ts, pid, state, seq, kind, _pad, family, lport, rport, _p, laddr,
                raddr in rows]
    return objects


def read_counts(prog) -> list[tuple[int, str, int, str, int, int]]:
    """(ip, laddr, lport, raddr, rport, retransmits), fewest first as BCC prints."""
    rows = [(tcp.ip_version(k.family), tcp.address(k.family, bytes(k.laddr)), k.lport,
             tcp.address(k.family, bytes(k.raddr)), k.rport, v.value)
            for k, v in prog["retransmits"].items()]
    return sorted(rows, key=lambda r: (r[5], r[:5]))


def print_counts(prog, out: Output) -> None:
    rows = read_counts(prog)
    tcp.print_counts(
        prog, out,
        [{"ip": ip, "laddr": laddr, "lport": lport, "raddr": raddr, "rport": rport, "count": n}
         for ip, laddr, lport, raddr, rport, n in rows],
        "%-25s %-25s %-10s" % ("LADDR:LPORT", "RADDR:RPORT", "RETRANSMITS"),
        ["%-20s <-> %-20s %10d" % (f"[{laddr}]#{lport}", f"[{raddr}]#{rport}", n)
         for _ip, laddr, lport, raddr, rport, n in rows])


@click.command("tcpretrans", context_settings={**options.TOOL_CONTEXT,
                                               "ignore_unknown_options": True})
@click.option("-s", "--sequence", is_flag=True, help="Show TCP sequence numbers.")
@click.option("-l", "--lossprobe", is_flag=True,
              help="Include tail loss probe attempts (needs kprobes).")
@click.option("-c", "--count", is_flag=True, help="Count retransmits per flow; print at the end.")
@tcp.tool_options("-d")
def command(sequence, lossprobe, count, ipv4, ipv6, duration, buffer_pages, out, command):
    """Trace TCP retransmits: TIME PID IP LADDR:LPORT T> RADDR:RPORT STATE."""
    family = tcp.family_define(ipv4, ipv6)

    def open_stream(_pid: int) -> stream.EventStream:
        return start(loss_probes=lossprobe, count=count, family=family,
                     buffer_pages=buffer_pages)
    message = "Tracing retransmits ... Hit Ctrl-C to end"
    if count:
        tcp.count_main(None, command, open_stream, duration=duration, message=message,
                       report=lambda prog: print_counts(prog, out))
        return
    event_tools.main(None, command, open_stream,
                lambda: event_tools.Printer(out, header(sequence), text_formatter(sequence),
                                       json_formatter(time.monotonic_ns())),
                duration=duration, message=message)

"""tcpdrop: TCP packets the kernel dropped, with its reason and kernel stack (BCC's columns).

From skb:kfree_skb (no kprobes); see bpf/tcpdrop.bpf.c. The reason names are
read from the tracepoint's own format (the kernel's enum skb_drop_reason).
"""
from __future__ import annotations

import contextlib
import re
import time

import click

from ..collect import stream

from ..families import event_tools
from ..families import tcp
from ..kernel import tracefs
from ..collect.stack_maps import without_bpf_frames
from ..symbolize.symbols import Symbolizer

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("tcpdrop")   # struct event in bpf/tcpdrop.bpf.c

# include/net/tcp.h TCPHDR_*, low bit first (BCC's order)
FLAG_NAMES = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")
_SYMBOLIC = re.compile(r'\{\s*(\d+)\s*,\s*"(\w+)"\s*\}')


def flags_text(flags: int) -> str:
    return "|".join(name for bit, name in enumerate(FLAG_NAMES) if flags & (1 << bit))


def reason_names(print_fmt: str) -> dict[int, str]:
    """The reason table from kfree_skb's print fmt: __print_symbolic(REC->reason, {2, "X"}...)."""
    start = print_fmt.find("__print_symbolic(REC->reason")
    return {int(n): name for n, name in _SYMBOLIC.findall(print_fmt[start:])} if start >= 0 else {}


def state_text(state: int) -> str:
    return tcp.state_name(state) if state else "-"


class Drops:
    """The loaded program, its reason names and a symbolizer for its stacks."""

    def __init__(self, events: stream.EventStream) -> None:
        self.events = events
        self.reasons = reason_names(tracefs.tracepoint("skb", "kfree_skb").print_fmt)
        self.symbolizer = Symbolizer(events.prog.bpf, show_module=False)
        with contextlib.suppress(KeyError):   # no kstacks with --no-stacks
            self.symbolizer.kstacks = events.prog["kstacks"]   # by hash (ptk_kstack.h)

    def reason(self, code: int) -> str:
        return self.reasons.get(code, str(code))

    def stack(self, stack_hash: int) -> list[str]:
        frames = self.symbolizer.hashed_kernel_stack(stack_hash)
        return [f.name for f in without_bpf_frames(frames)]


def start(*, family: int = 0, kernel_stacks: bool = True,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    prog = tcp.load("tcpdrop", {"KERNEL_STACKS": kernel_stacks}, buffer_pages=buffer_pages,
                    family=family)
    return stream.EventStream(prog, FIELDS)


HEADER = "%-8s %-7s %-2s %-20s > %-20s %-20s %s" % (
    "TIME", "PID", "IP", "SADDR:SPORT", "DADDR:DPORT", "STATE (FLAGS)", "REASON (CODE)")


def text_formatter(drops: Drops, stacks: bool):
    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for (_ts, pid, _kstack, reason, state, flags, _pad, _comm, khash, family, sport, dport,
             _p, saddr, daddr) in rows:
            out.append("%-8s %-7d %-2d %-20s > %-20s %-20s %s (%d)" % (
                time.strftime("%H:%M:%S"), pid, tcp.ip_version(family),
                f"{tcp.address(family, saddr)}:{sport}", f"{tcp.address(family, daddr)}:{dport}",
                f"{state_text(state)} ({flags_text(flags)})", drops.reason(reason), reason))
            if stacks:
                out.extend("\t" + name for name in drops.stack(khash))
                out.append("")
        return out
    return lines


def json_formatter(drops: Drops, stacks: bool, t0: int):
    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for (ts, pid, _kstack, reason, state, flags, _pad, comm, khash, family, sport, dport,
             _p, saddr, daddr) in rows:
            obj = {"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "comm": stream.cstr(comm),
                   "ip": tcp.ip_version(family), "saddr": tcp.address(family, saddr),
                   "sport": sport, "daddr": tcp.address(family, daddr), "dport": dport,
                   "state": tcp.state_name(state) if state else None,
                   "flags": flags_text(flags), "reason": drops.reason(reason),
                   "reason_code": reason}
            if stacks:
                obj["kernel_stack"] = drops.stack(khash)
            out.append(obj)
        return out
    return objects


@click.command("tcpdrop", context_settings={"help_option_names": ["-h", "--help"],
                                            "ignore_unknown_options": True})
@click.option("--no-stacks", "no_stacks", is_flag=True,
              help="Leave out the kernel stack under each drop.")
@tcp.tool_options("-d")
def command(no_stacks, ipv4, ipv6, duration, buffer_pages, out, command):
    """Trace TCP packets the kernel drops, with the kernel's reason and stack.

    Columns: SADDR:SPORT > DADDR:DPORT STATE (FLAGS) REASON (CODE)."""
    family = tcp.family_define(ipv4, ipv6)
    stacks = not no_stacks
    opened: list[stream.EventStream] = []

    def open_stream(_pid: int) -> stream.EventStream:
        opened.append(start(family=family, kernel_stacks=stacks, buffer_pages=buffer_pages))
        return opened[-1]

    def printer() -> event_tools.Printer:
        drops = Drops(opened[-1])
        return event_tools.Printer(out, HEADER, text_formatter(drops, stacks),
                              json_formatter(drops, stacks, time.monotonic_ns()))
    event_tools.main(None, command, open_stream, printer, duration=duration,
                message="Tracing TCP drops ... Hit Ctrl-C to end")

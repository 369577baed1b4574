"""biopattern: random vs sequential block I/O per disk, every interval (BCC's columns).

From block:block_rq_complete, counted in the kernel; see bpf/biopattern.bpf.c.
"""
from __future__ import annotations

import time

import click

from ..kernel import block
from ..cli import options
from ..families import summary
from ..render.output import Output
from ..collect.stream import program

DRY_RUN_ARGS: list[str] = []


def start(*, disk: str | None = None) -> summary.Session:
    """read() -> rows (disk, random, sequential, bytes) by disk name."""
    prog = program("biopattern", {"FILTER_DEV": block.disk_dev(disk) if disk else 0})
    return summary.Session(prog, read)


def read(prog) -> list[tuple]:
    rows = [(block.dev_name(k.value), v.random, v.sequential, v.bytes)
            for k, v in prog["patterns"].items() if v.random + v.sequential]
    return sorted(rows)


def percent(part: int, total: int) -> int:
    return round(part * 100 / total) if total else 0


def report(rows: list[tuple], *, timestamp: bool, out: Output, number: int) -> None:
    now = time.strftime("%H:%M:%S")

    def text() -> list[str]:
        head = "%-9s " % "TIME" if timestamp else ""
        lines = [head + "%-7s %5s %5s %8s %10s" % ("DISK", "%RND", "%SEQ", "COUNT", "KBYTES")]
        for disk, rnd, seq, nbytes in rows:
            total = rnd + seq
            lines.append(("%-9s " % now if timestamp else "") + "%-7s %5d %5d %8d %10d" % (
                disk, percent(rnd, total), percent(seq, total), total, nbytes // 1024))
        return lines
    out.emit(text=text, json=[{"type": "disk", "time": now, "interval_no": number, "disk": disk,
                               "random": rnd, "sequential": seq, "count": rnd + seq,
                               "bytes": nbytes} for disk, rnd, seq, nbytes in rows])


@click.command("biopattern", context_settings={**options.TOOL_CONTEXT,
                                               "ignore_unknown_options": True})
@click.option("-T", "--timestamp", is_flag=True, help="Include a TIME column.")
@block.disk_option()
@summary.summary_options()
def command(timestamp, disk, interval, count, duration, out, words):
    """Show random vs sequential block I/O per disk (%RND %SEQ COUNT KBYTES)."""
    number = [0]

    def print_report(session: summary.Session) -> None:
        number[0] += 1
        report(session.read(), timestamp=timestamp, out=out, number=number[0])

    summary.main(words, interval, count, duration, out, lambda: start(disk=disk),
                 print_report, clear=("patterns",),
                 message="Tracing block device I/O requested seeks... Hit Ctrl-C to end.")

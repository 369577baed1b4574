"""biotop: block I/O by process, direction and disk, every interval (BCC's layout).

From block:block_io_start, block_rq_issue and block_rq_complete, summed in the
kernel (no kprobes); see bpf/biotop.bpf.c.
"""
from __future__ import annotations

import click

from ..kernel import block
from ..cli import options
from ..families import summary, toptable
from ..engine.runner import Target
from ..collect.stream import cstr, program

DRY_RUN_ARGS: list[str] = []
MINOR_MASK = (1 << block.MINOR_BITS) - 1

HEADER = "%-7s %-16s %1s %-3s %-3s %-8s %5s %7s %6s" % (
    "PID", "COMM", "D", "MAJ", "MIN", "DISK", "I/O", "Kbytes", "AVGms")


def start(*, pid: int = 0, disk: str | None = None) -> summary.Session:
    """read() -> rows (pid, comm, rw, dev, io, bytes, ns), most bytes first."""
    defines = {"FILTER_PID": pid or 0, "FILTER_DEV": block.disk_dev(disk) if disk else 0}
    return summary.Session(program("biotop", defines), read)


def read(prog) -> list[tuple]:
    rows = [(k.pid, cstr(bytes(k.comm)), chr(k.rw) if isinstance(k.rw, int) else k.rw.decode(),
             k.dev, v.io, v.bytes, v.ns) for k, v in prog["io_by_process"].items()]
    return sorted(rows, key=lambda r: (-r[5], -r[4], r[0]))


def text(rows: list[tuple], maxrows: int) -> str:
    lines = [HEADER]
    for pid, comm, rw, dev, io, nbytes, ns in rows[:maxrows]:
        lines.append("%-7d %-16s %1s %-3d %-3d %-8s %5s %7s %6.2f" % (
            pid, comm, rw, dev >> block.MINOR_BITS, dev & MINOR_MASK, block.dev_name(dev), io,
            nbytes // 1024, ns / io / 1e6 if io else 0))
    return "\n".join(lines) + "\n"


def objects(rows: list[tuple], stamp: dict) -> list[dict]:
    return [{"type": "io", **stamp, "pid": pid, "comm": comm, "direction": rw,
             "major": dev >> block.MINOR_BITS, "minor": dev & MINOR_MASK,
             "disk": block.dev_name(dev), "io": io, "bytes": nbytes,
             "avg_ms": round(ns / io / 1e6, 6) if io else 0}
            for pid, comm, rw, dev, io, nbytes, ns in rows]


@click.command("biotop", context_settings={**options.TOOL_CONTEXT,
                                           "ignore_unknown_options": True})
@click.option("-r", "--maxrows", type=click.IntRange(1, 1_000_000), default=20,
              show_default=True, help="Rows to print (--json prints all).")
@options.pid_option("-p")
@block.disk_option()
@toptable.options_tail
def command(maxrows, pid, disk, noclear, nosummary, interval, count, duration, out, words):
    """Summarize block device I/O by process, direction and disk, every interval."""
    interval, count, cmd = toptable.interval_count_command(words, interval, count)
    target = Target.from_options(pid, cmd)
    number = [0]

    def report(session: summary.Session) -> None:
        rows = session.read()
        number[0] += 1
        out.emit(text=lambda: (toptable.prefix(clear=not noclear, loadavg=not nosummary) +
                               text(rows, maxrows)).splitlines(),
                 json=lambda: objects(rows, toptable.stamp(number[0])))

    try:
        with start(pid=target.pid, disk=disk) as session:
            summary.run(session, target, lambda: report(session), interval=interval,
                        count=count, duration=duration, clear=("io_by_process",),
                        message=f"Tracing... Output every {interval:g} secs. Hit Ctrl-C to end")
            out.loss(session.loss())
    finally:
        target.finish()

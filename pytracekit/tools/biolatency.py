"""biolatency: block I/O latency histograms (BCC's options and layout), from
block:block_rq_insert/issue/complete, aggregated in the kernel."""
from __future__ import annotations

import click

from ..kernel import block
from ..cli import options
from ..families import summary
from ..errors import UsageError

DRY_RUN_ARGS: list[str] = []


def start(*, disk: str | None = None, queued: bool = False, milliseconds: bool = False,
          per_disk: bool = False, per_flags: bool = False) -> summary.Session:
    """read() -> {label: Histogram}."""
    if per_disk and per_flags:
        raise UsageError("-D (per disk) and -F (per flags) cannot be combined")
    from ..collect.stream import program
    defines = {"FILTER_DEV": block.disk_dev(disk) if disk else 0, "QUEUED": queued,
               "PER_DISK": per_disk, "PER_FLAGS": per_flags,
               "UNIT_NS": 1_000_000 if milliseconds else 1000}
    prog = program("biolatency", defines)    # TRACEPOINT_PROBEs attach themselves
    return summary.Session(prog, lambda p: read(p, milliseconds=milliseconds,
                                                per_disk=per_disk, per_flags=per_flags))


def read(prog, *, milliseconds: bool, per_disk: bool, per_flags: bool):
    label_of = block.dev_name if per_disk else block.rwbs if per_flags else (lambda _l: "")
    return summary.histograms(prog["hist"], "msecs" if milliseconds else "usecs", label_of)


@click.command("biolatency", context_settings={**options.TOOL_CONTEXT,
                                               "ignore_unknown_options": True})
@click.option("-T", "--timestamp", is_flag=True, help="Include a timestamp on output.")
@click.option("-Q", "--queued", is_flag=True, help="Include OS queued time.")
@click.option("-m", "--milliseconds", is_flag=True, help="Histogram in milliseconds.")
@click.option("-D", "--disks", "per_disk", is_flag=True, help="One histogram per disk.")
@click.option("-F", "--flags", "per_flags", is_flag=True,
              help="One histogram per rwbs flag set (R, W, WS, FWS ...).")
@block.disk_option()
@summary.summary_options()
def command(timestamp, queued, milliseconds, per_disk, per_flags, disk, interval, count,
            duration, out, words):
    """Summarize block device I/O latency as a histogram."""
    section = "disk" if per_disk else "flags" if per_flags else None

    def report(session: summary.Session) -> None:
        summary.print_histograms(session.read(), section=section,
                                 value_name="msecs" if milliseconds else "usecs",
                                 out=out, timestamp=timestamp)

    summary.main(words, interval, count, duration, out,
                 lambda: start(disk=disk, queued=queued, milliseconds=milliseconds,
                               per_disk=per_disk, per_flags=per_flags),
                 report, clear=("hist",), message="Tracing block device I/O... Hit Ctrl-C to end.")

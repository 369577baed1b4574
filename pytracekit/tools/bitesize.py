"""bitesize: block I/O size histograms (Kbytes) per process name, BCC layout."""
from __future__ import annotations

import click

from ..kernel import block
from ..cli import options
from ..families import summary
from ..model import Histogram
from ..collect.stream import cstr

DRY_RUN_ARGS: list[str] = []


def start(*, disk: str | None = None) -> summary.Session:
    """read() -> {process name: Histogram}."""
    from ..collect.stream import program
    return summary.Session(program("bitesize", {"FILTER_DEV": block.disk_dev(disk) if disk else 0}),
                           read)


def read(prog) -> dict[str, Histogram]:
    out: dict[str, Histogram] = {}
    for key, value in prog["hist"].items():
        name = cstr(key.comm)
        hist = out.setdefault(name, Histogram(unit="Kbytes", label=name))
        hist.buckets[key.slot] = hist.buckets.get(key.slot, 0) + value.value
    return dict(sorted(out.items()))


@click.command("bitesize", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@block.disk_option()
@summary.summary_options()
def command(disk, interval, count, duration, out, words):
    """Summarize block I/O sizes per process name as histograms."""
    def report(session: summary.Session) -> None:
        summary.print_histograms(session.read(), section="Process Name", value_name="Kbytes",
                                 out=out, timestamp=False)

    summary.main(words, interval, count, duration, out, lambda: start(disk=disk), report,
                 clear=("hist",), message="Tracing block I/O... Hit Ctrl-C to end.")

"""slabratetop: kernel slab allocations per cache, top-like, every interval
(BCC's layout: CACHE ALLOCS BYTES under a loadavg line), from kmem:kmem_cache_alloc
(named caches) and kmem:kmalloc. The kmalloc tracepoint does not name its cache:
those allocations are shown as kmalloc-SIZE, by the size of the object received
(the kmalloc-cg-, -rcl-, -dma- and random variants are not told apart), and an
allocation too large for a slab is shown under the pages it got (kmalloc-8192
and up can be either)."""
from __future__ import annotations

import sys

import click

from ..cli import options
from ..collect.mapdrain import drain
from ..engine.loader import Program
from ..families.periodic import run_periodic, timestamp
from ..engine.runner import Target, announce
from ..families.summary import interval_and_count
from ..textsafe import cstr
from ..engine.session import ProgramSession

DRY_RUN_ARGS: list[str] = []

CLEAR = "\033[H\033[J"
DEFAULT_INTERVAL = 1.0


class SlabCounts(ProgramSession):
    """The loaded program; read(clear) -> {cache: (allocs, bytes)} since the last clear."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    def read(self, clear: bool = True) -> dict[str, tuple[int, int]]:
        out: dict[str, list[int]] = {}

        def add(name: str, value) -> None:
            row = out.setdefault(name, [0, 0])
            row[0] += value.allocs
            row[1] += value.bytes
        caches, sizes = self.prog["caches"], self.prog["kmalloc_sizes"]
        for key, value in (drain(caches) if clear else caches.items()):
            add(cstr(key.name), value)
        for key, value in (drain(sizes) if clear else sizes.items()):
            add(f"kmalloc-{key.value}", value)
        return {name: (a, b) for name, (a, b) in out.items()}


def start(*, pid: int = 0) -> SlabCounts:
    return SlabCounts(Program.from_file("slabratetop", defines={"FILTER_PID": pid or 0}))


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return f.read().strip()
    except OSError:
        return "?"


def table(counts: dict[str, tuple[int, int]], maxrows: int) -> list[str]:
    """BCC's rows: by bytes, largest first, at most `maxrows`."""
    rows = sorted(counts.items(), key=lambda item: (-item[1][1], item[0]))[:maxrows]
    return [f"{'CACHE':<32} {'ALLOCS':>6} {'BYTES':>10}"] + \
        [f"{name[:32]:<32} {allocs:>6} {size:>10}" for name, (allocs, size) in rows]


@click.command("slabratetop", context_settings={**options.TOOL_CONTEXT,
                                                "ignore_unknown_options": True})
@click.option("-C", "--noclear", is_flag=True, help="Don't clear the screen.")
@click.option("-r", "--maxrows", type=click.IntRange(1, 1 << 20), default=20, show_default=True,
              help="Maximum rows to print.")
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED,
                metavar="[INTERVAL [COUNT]] | [-- COMMAND]")
def command(noclear, maxrows, pid, interval, duration, out, words):
    """Kernel slab allocations per cache, every interval: CACHE ALLOCS BYTES."""
    interval, count, command_words = interval_and_count(words, interval, None)
    interval = interval or DEFAULT_INTERVAL
    clear = not noclear and sys.stdout.isatty()     # the text form's screen
    target = Target.from_options(pid, command_words)
    try:
        slabs = start(pid=target.pid)
        try:
            slabs.prog.ready()
            announce("Tracing... Output every %g secs. Hit Ctrl-C to end" % interval)
            def report(_final: bool) -> None:
                counts, now = slabs.read(), timestamp()
                out.emit(text=lambda: [f"{CLEAR if clear else ''}{now} loadavg: {loadavg()}",
                                       ""] + table(counts, maxrows) + [""],
                         json=lambda: [{"type": "cache", "time": now, "cache": name,
                                        "allocs": allocs, "bytes": size}
                                       for name, (allocs, size) in
                                       sorted(counts.items(),
                                              key=lambda i: (-i[1][1], i[0]))[:maxrows]])

            run_periodic(target, duration=duration, interval=interval, count=count,
                         report=report)
            out.loss(slabs.loss())
        finally:
            slabs.close()
    finally:
        target.finish()

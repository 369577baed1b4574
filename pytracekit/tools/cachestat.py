"""cachestat: page cache statistics every interval in BCC's columns (HITS MISSES
DIRTIES HITRATIO BUFFERS_MB CACHED_MB), from the page-cache tracepoints. BCC
counts kernel functions (mark_page_accessed...) through kprobes; the
tracepoints see pages added to the cache (misses) and folios dirtied, but no
lookup that finds its page: HITS and HITRATIO are printed as "-" (null in
JSON). docs/tools/cachestat.md says exactly what each column counts."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..errors import UsageError
from ..engine.loader import Program
from ..families.periodic import run_periodic, timestamp
from ..engine.runner import Target, announce
from ..engine.session import ProgramSession

DRY_RUN_ARGS: list[str] = []

STATS = ("added_pages", "added_folios", "dirtied_folios")   # bpf/cachestat.bpf.c's order
DEFAULT_INTERVAL = 1.0


class CacheCounts(ProgramSession):
    """The loaded program; read() is the running total of each stat."""

    def __init__(self, prog: Program) -> None:
        self.prog = prog

    def read(self) -> dict[str, int]:
        table = self.prog["stats"]
        return {name: sum(table[table.Key(i)]) for i, name in enumerate(STATS)}


def start(*, pid: int = 0) -> CacheCounts:
    return CacheCounts(Program.from_file("cachestat", defines={"FILTER_PID": pid or 0}))


def meminfo_mb() -> tuple[float, float]:
    """(Buffers, Cached) in MiB, as BCC reads them."""
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            name, rest = line.split(":", 1)
            values[name] = int(rest.split()[0])
    return values.get("Buffers", 0) / 1024, values.get("Cached", 0) / 1024


def header(stamp: bool) -> str:
    return ("%-8s " % "TIME" if stamp else "") + "%8s %8s %8s %8s %12s %10s" % (
        "HITS", "MISSES", "DIRTIES", "HITRATIO", "BUFFERS_MB", "CACHED_MB")


def row(now: str | None, misses: int, dirties: int, buffers: float, cached: float) -> str:
    return ("%-8s " % now if now else "") + "%8s %8d %8d %8s %12.0f %10.0f" % (
        "-", misses, dirties, "-", buffers, cached)


@click.command("cachestat", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@click.option("-T", "--timestamp", "stamp", is_flag=True, help="Include a timestamp on output.")
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.output_options()
@options.standard
@click.argument("words", nargs=-1, type=click.UNPROCESSED,
                metavar="[INTERVAL [COUNT]] | [-- COMMAND]")
def command(stamp, pid, interval, duration, out, words):
    """Page cache misses (pages added) and dirtied folios per interval; hits: see docs."""
    pos_interval, count, command_words = options.split_interval_count(words)
    if pos_interval is not None and interval is not None:
        raise UsageError("give the interval once: positionally or with --interval")
    interval = interval or pos_interval or DEFAULT_INTERVAL
    target = Target.from_options(pid, command_words)
    try:
        cache = start(pid=target.pid)
        try:
            cache.prog.ready()
            announce("Tracing page cache... Output every %g secs. Hit Ctrl-C to end" % interval)
            out.line(header(stamp))
            last = {"totals": dict.fromkeys(STATS, 0), "at": time.monotonic()}

            def report(_final: bool) -> None:
                totals, now = cache.read(), time.monotonic()
                counts = {k: totals[k] - last["totals"][k] for k in STATS}
                seconds = now - last["at"]
                last.update(totals=totals, at=now)
                buffers, cached = meminfo_mb()
                out.emit(text=lambda: row(timestamp() if stamp else None, counts["added_pages"],
                                          counts["dirtied_folios"], buffers, cached),
                         json=lambda: {"type": "interval", "time": timestamp(),
                                       "seconds": round(seconds, 3), "hits": None,
                                       "misses": counts["added_pages"],
                                       "added_folios": counts["added_folios"],
                                       "dirties": counts["dirtied_folios"], "hitratio": None,
                                       "buffers_mb": round(buffers, 1),
                                       "cached_mb": round(cached, 1)})

            run_periodic(target, duration=duration, interval=interval, count=count,
                         report=report)
            out.loss(cache.loss())
        finally:
            cache.close()
    finally:
        target.finish()

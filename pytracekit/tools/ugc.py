"""ugc: Python garbage collections (BCC's ugc for Python): per collection its
start, duration and generation from CPython's python:gc__start/gc__done USDT
probes, then a summary per generation (count, total time)."""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import click

from ..cli import options
from ..probes import specs as probes
from ..engine import settings
from ..collect import stream
from ..families import event_tools
from ..errors import NotFoundError, UsageError
from ..engine.runner import Target

# --dry-run needs no Python process: it compiles and loads the programs
# without USDT argument readers (see USDT_ARGS in bpf/ugc.bpf.c).
DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("ugc")   # struct event in bpf/ugc.bpf.c

PROBES = (("gc__start", "on_gc_start"), ("gc__done", "on_gc_done"))


def python_binary(pid: int) -> str:
    """The file of `pid` that holds CPython's USDT notes: its libpython when
    the interpreter is built shared (pyenv --enable-shared), else its executable."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(maxsplit=5)
                path = parts[5].strip() if len(parts) == 6 else ""
                if os.path.basename(path).startswith("libpython") and ".so" in path:
                    return path
        return os.path.realpath(f"/proc/{pid}/exe")
    except OSError:
        raise NotFoundError(f"cannot read process {pid}: is it still running?") from None


def usdt_context(pid: int):
    """One bcc.USDT context with both gc probes enabled in process `pid`."""
    binary = python_binary(pid)
    for probe, _fn in PROBES:
        try:
            found = probes.resolve(probes.parse_spec(f"u:{binary}:{probe}"), pid=pid)
        except NotFoundError:
            found = []
        if not found:
            raise NotFoundError(f"process {pid} ({binary}) has no python:{probe} USDT probe: "
                                "ugc needs a CPython built with --with-dtrace (Debian's "
                                "/usr/bin/python3.11 is)")
    ctx = probes.open_usdt(binary, pid)
    try:
        for probe, fn_name in PROBES:
            ctx.enable_probe(f"python:{probe}", fn_name)
    except Exception:  # bcc raises USDTException / bare Exception
        raise NotFoundError(f"cannot enable python:gc__start/gc__done in process {pid}: "
                            "is it still running?") from None
    return ctx


def start(*, pid: int = 0, min_ns: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "MIN_NS": min_ns}
    mode = settings.current()
    if mode.ebpf or (mode.dry_run and not pid):
        events = stream.EventStream(stream.load("ugc", {**defines, "USDT_ARGS": 0},
                                                buffer_pages), FIELDS)
        for _probe, fn_name in PROBES:   # a dry run loads only
            events.prog.attach_uprobe(sys.executable, fn_name, address=0)
        return events
    if not pid:
        raise UsageError("give -p PID: CPython's gc probes are guarded by semaphores, which "
                         "can only be set in a running process")
    return stream.EventStream(stream.load("ugc", defines, buffer_pages, [usdt_context(pid)]),
                              FIELDS)


@dataclass
class Generations:
    """Per generation: collections shown and their total time."""
    counts: dict[int, int] = field(default_factory=dict)
    total_ns: dict[int, int] = field(default_factory=dict)

    def add(self, generation: int, elapsed_ns: int) -> None:
        self.counts[generation] = self.counts.get(generation, 0) + 1
        self.total_ns[generation] = self.total_ns.get(generation, 0) + elapsed_ns

    def text(self, milliseconds: bool) -> str:
        unit, scale = ("ms", 1e6) if milliseconds else ("us", 1e3)
        lines = [f"\n{'GEN':<4} {'COUNT':>8} {'TOTAL (' + unit + ')':>14} {'AVG (' + unit + ')':>12}"]
        for gen in sorted(self.counts):
            total = self.total_ns[gen] / scale
            lines.append(f"{gen:<4} {self.counts[gen]:>8} {total:>14.2f} "
                         f"{total / self.counts[gen]:>12.2f}")
        return "\n".join(lines)

    def objects(self) -> list[dict]:
        return [{"type": "generation", "generation": gen, "count": self.counts[gen],
                 "total_ns": self.total_ns[gen]} for gen in sorted(self.counts)]


def description(generation: int, collected: int) -> str:
    return f"gen {generation} GC collected {collected} objects"


def formatters(t0: int, milliseconds: bool, text_filter: str | None, gens: Generations):
    scale = 1e6 if milliseconds else 1e3

    def shown(rows: list[tuple]) -> list[tuple]:
        kept = [r for r in rows
                if not text_filter or text_filter in description(r[5], r[2])]
        for r in kept:
            gens.add(r[5], r[1])
        return kept

    def lines(rows: list[tuple]) -> list[str]:
        return [f"{(ts - t0) / 1e9:<8.3f} {elapsed / scale:<9.2f} {description(gen, collected)}"
                for ts, elapsed, collected, _pid, _tid, gen, _ in shown(rows)]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "generation": gen, "elapsed_ns": elapsed, "collected": collected}
                for ts, elapsed, collected, pid, tid, gen, _ in shown(rows)]
    return lines, objects


@click.command("ugc", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@click.option("-m", "--milliseconds", is_flag=True, help="Report times in milliseconds "
              "(default: microseconds).")
@click.option("-M", "--minimum", type=click.IntRange(0, 10**9), default=0,
              help="Only collections at least this long (in ms with -m, else us).")
@click.option("-F", "--filter", "text_filter", default=None,
              help="Only collections whose description contains this text (e.g. 'gen 2').")
@options.duration_option("-d")
@event_tools.buffer_option("-b")
@options.output_options()
@options.standard
def command(pid, milliseconds, minimum, text_filter, duration, buffer_pages, out):
    """Trace Python garbage collections, then sum them per generation.

    Needs -p PID: CPython's gc probes are set in a running process."""
    gens = Generations()
    min_ns = minimum * (1_000_000 if milliseconds else 1_000)
    target = Target.from_options(pid, ())
    try:
        with start(pid=target.pid, min_ns=min_ns, buffer_pages=buffer_pages) as events:
            lines, objects = formatters(time.monotonic_ns(), milliseconds, text_filter, gens)
            header = f"{'START':<8} {'TIME (' + ('ms' if milliseconds else 'us') + ')':<9} DESCRIPTION"
            event_tools.run(events, target, event_tools.Printer(out, header, lines, objects),
                       duration=duration,
                       message="Tracing Python garbage collections... Hit Ctrl-C to end.")
            out.emit(text=lambda: gens.text(milliseconds), json=gens.objects)
    finally:
        target.finish()

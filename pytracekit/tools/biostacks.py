"""biostacks: block I/O latency histograms per initiating kernel stack, with
the process and disk that started the requests (libbpf-tools' biostacks
layout), from block:block_io_start (or block_rq_issue) to block_rq_complete."""
from __future__ import annotations

from dataclasses import dataclass, field

import click

from ..kernel import block
from ..cli import options
from ..collect.mapdrain import drain
from ..model import Histogram
from ..families import summary
from ..families.periodic import run_periodic, timestamp
from ..render.jsonl import histogram_obj
from ..render.text import log2_histogram
from ..engine.runner import Target, announce
from ..collect.stack_maps import without_bpf_frames
from ..collect.stream import program
from ..symbolize.symbols import Symbolizer
from ..textsafe import cstr
from ..engine.session import ProgramSession

DRY_RUN_ARGS: list[str] = []


@dataclass
class StackLatency:
    """Requests one process started from one kernel stack on one disk."""

    comm: str
    pid: int
    disk: str
    stack: list[str]
    hist: Histogram = field(default_factory=Histogram)


class BlockStacks(ProgramSession):
    """The loaded program; read(clear) -> [StackLatency], most requests first."""

    def __init__(self, prog, unit: str) -> None:
        self.prog, self.unit, self.symbols = prog, unit, Symbolizer()
        self.symbols.kstacks = prog["kstacks"]

    def read(self, clear: bool = True) -> list[StackLatency]:
        table = self.prog["hist"]
        groups: dict[tuple, StackLatency] = {}
        for key, value in (drain(table) if clear else table.items()):
            ident = (key.pid, key.dev, key.stack_hash, bytes(key.comm))
            group = groups.get(ident)
            if group is None:
                frames = self.symbols.hashed_kernel_stack(key.stack_hash)   # ptk_kstack.h
                group = groups[ident] = StackLatency(
                    cstr(key.comm), key.pid, block.dev_name(key.dev),
                    [f.name for f in without_bpf_frames(frames)] or ["[missing stack]"],
                    Histogram(unit=self.unit))
            group.hist.buckets[key.slot] = group.hist.buckets.get(key.slot, 0) + value.value
        return sorted(groups.values(), key=lambda g: (-g.hist.total, g.pid, g.stack))


def start(*, disk: str | None = None, milliseconds: bool = False, pid: int = 0) -> BlockStacks:
    defines = {"FILTER_DEV": block.disk_dev(disk) if disk else 0, "FILTER_PID": pid or 0,
               "UNIT_NS": 1_000_000 if milliseconds else 1000}
    return BlockStacks(program("biostacks", defines), "msecs" if milliseconds else "usecs")


def text(groups: list[StackLatency], unit: str) -> str:
    out = []
    for g in groups:
        out.append("%-14.14s %-6d %-7s" % (g.comm, g.pid, g.disk))
        out += g.stack
        out += [log2_histogram(g.hist, unit), ""]
    return "\n".join(out) + ("\n" if out else "")


@click.command("biostacks", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@block.disk_option()
@click.option("-m", "--milliseconds", is_flag=True, help="Millisecond histograms.")
@options.pid_option("-p")
@options.interval_option()
@options.duration_option()
@options.output_options()
@options.standard
@options.command_argument
def command(disk, milliseconds, pid, interval, duration, out, command):
    """Block I/O latency per initiating kernel stack, process and disk."""
    unit = "msecs" if milliseconds else "usecs"
    interval, count, command = summary.interval_and_count(command, interval, None)
    target = Target.from_options(pid, command)
    try:
        stacks = start(disk=disk, milliseconds=milliseconds, pid=target.pid)
        try:
            stacks.prog.ready()
            announce("Tracing block I/O with init stacks. Hit Ctrl-C to end.")

            def report(_final: bool) -> None:
                groups = stacks.read()
                now = timestamp()
                if interval:
                    out.line(now)
                out.emit(text=lambda: text(groups, unit).splitlines(),
                         json=[{**histogram_obj(g.hist), "type": "stack", "time": now,
                                "comm": g.comm, "pid": g.pid, "disk": g.disk,
                                "kernel_stack": g.stack} for g in groups])

            run_periodic(target, duration=duration, interval=interval, count=count,
                         report=report)
            out.loss(stacks.loss())
        finally:
            stacks.close()
    finally:
        target.finish()

"""memleak: outstanding allocations by stack, like BCC's memleak.

With -p PID or `-- COMMAND`: uprobes/uretprobes on libc's allocators
(malloc, calloc, realloc, posix_memalign, aligned_alloc, valloc, memalign,
pvalloc, mmap) and frees (free, munmap). Without a process: kernel
allocations from the kmem tracepoints. Every interval (and at the end) the
top stacks by outstanding bytes are printed, largest last, as BCC does.

Stacks are symbolized while the process is alive (at every poll), so the
report after a command exits still names its functions. User stacks are
unwound in the kernel from CFI (--unwind dwarf, ustacks.py): whole also in
code built without frame pointers; --unwind fp follows frame pointers.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Any

import click

from ..cli import options
from ..errors import UsageError
from ..engine.loader import Program
from ..probes.emulated import attach_entry_uprobe
from ..collect.mapdrain import snapshot
from ..model import Frame
from ..families.periodic import BpfTool, attached, require_alive, require_tracepoints, run_periodic
from ..engine.runner import Target
from ..symbolize.symbols import Symbolizer, function_name
from ..collect import user_stacks as ustacks
from ..collect.user_stacks import EventUnwinding, UnwindingToolMixin

DRY_RUN_ARGS = ["-p", "1"]
MAX_SECONDS_MS = options.MAX_SECONDS * 1000   # -o: older than a year is a typo
# (symbol, entry program or None, return program or None); free-like calls have no return
USER_PROBES = [
    ("malloc", "malloc_enter", "alloc_return"),
    ("calloc", "calloc_enter", "alloc_return"),
    ("realloc", "realloc_enter", "alloc_return"),
    ("posix_memalign", "posix_memalign_enter", "posix_memalign_return"),
    ("aligned_alloc", "aligned_alloc_enter", "alloc_return"),
    ("valloc", "valloc_enter", "alloc_return"),
    ("memalign", "memalign_enter", "alloc_return"),
    ("pvalloc", "pvalloc_enter", "alloc_return"),
    ("mmap", "mmap_enter", "mmap_return"),
    ("free", "free_probe", None),
    ("munmap", "free_probe", None),
]


@dataclass
class Outstanding:
    """Outstanding allocations from one stack."""

    stack_id: int
    size: int = 0
    count: int = 0
    frames: list[Frame] = field(default_factory=list)     # leaf first
    addresses: list[tuple[int, int]] = field(default_factory=list)   # (address, size)
    stack_hash: int = 0         # nonzero: unwound in the kernel (ustacks.py), or kernel mode's


@dataclass
class Memleak(UnwindingToolMixin, BpfTool):
    pid: int = 0
    kernel: bool = False
    unwinding: EventUnwinding | None = None   # --unwind dwarf

    def _frames(self, stack_id: int, stack_hash: int = 0) -> list[Frame]:
        if stack_hash and self.kernel:   # in kstacks (ptk_kstack.h)
            return self.symbolizer.hashed_kernel_stack(stack_hash)
        if stack_hash:   # a frame-pointer fallback is rooted in its marker
            return self.symbolizer.marked_unwound_stack(stack_hash, self.pid)
        if stack_id < 0 or self.kernel:
            return []
        return self.symbolizer.stack(self.prog["user_stacks"], stack_id, pid=self.pid)

    def warm(self) -> None:
        """Symbolize new stacks now, while the process still has its mappings."""
        if self.kernel:
            return
        for key, _ in snapshot(self.prog["combined"]):
            self._frames(key.stack_id, key.stack_hash)

    def read(self, *, older_ms: float = 0, combined_only: bool = False,
             addresses: bool = False) -> list[Outstanding]:
        stacks: dict[tuple[int, int], Outstanding] = {}
        if combined_only:
            for key, value in snapshot(self.prog["combined"]):
                if value.allocations:
                    stacks[(key.stack_id, key.stack_hash)] = Outstanding(
                        key.stack_id, value.total_size, value.allocations,
                        stack_hash=key.stack_hash)
        else:
            cutoff = time.monotonic_ns() - int(older_ms * 1e6)
            for key, info in snapshot(self.prog["allocs"]):
                if older_ms and info.timestamp_ns > cutoff:
                    continue
                ref = (info.stack.stack_id, info.stack.stack_hash)
                entry = stacks.setdefault(ref, Outstanding(ref[0], stack_hash=ref[1]))
                entry.size += info.size
                entry.count += 1
                if addresses:
                    entry.addresses.append((key.value, info.size))
        for entry in stacks.values():
            entry.frames = self._frames(entry.stack_id, entry.stack_hash)
        return sorted(stacks.values(), key=lambda e: (e.size, e.count))



def start(*, pid: int = 0, obj: str = "c", sample_rate: int = 1, min_size: int | None = None,
          max_size: int | None = None, show_offsets: bool = True, max_allocs: int = 1000000,
          command: tuple[str, ...] = (), unwind: str = "dwarf", **_: Any) -> Memleak:
    """`command`: the held command whose pid is `pid`."""
    kernel = not pid
    defines: dict[str, Any] = {"FILTER_PID": pid, "KERNEL_MODE": kernel,
                               "SAMPLE_EVERY": sample_rate, "MAX_ALLOCS": max_allocs,
                               **ustacks.defines(unwind, user=not kernel, storage=16384,
                                                 command_pid=pid if command else 0)}
    if min_size is not None:
        defines["MIN_SIZE"] = f"{min_size}ULL"
    if max_size is not None:
        defines["MAX_SIZE"] = f"{max_size}ULL"
    if kernel:
        require_tracepoints("memleak", "kmem:kmalloc", "kmem:kmem_cache_alloc", "kmem:kfree",
                            "kmem:kmem_cache_free", "kmem:mm_page_alloc", "kmem:mm_page_free")
    prog = Program.from_file("memleak", defines=defines)
    symbolizer = Symbolizer(prog.bpf, show_module=show_offsets, show_offset=show_offsets)
    if kernel:
        symbolizer.kstacks = prog["kstacks"]
    else:   # frame-pointer walks by hash (ptk_ustack.h)
        symbolizer.fp_ustacks = prog["user_stacks"]
    unwinding = None
    try:
        require_alive(pid)
        if not kernel:
            unwinding = EventUnwinding.setup(prog, symbolizer, pids=[pid], command=command,
                                             command_pid=pid)
            for symbol, entry, ret in USER_PROBES:
                if ret:
                    prog.attach_uprobe(obj, entry, symbol=symbol, pid=pid)
                    prog.attach_uprobe(obj, ret, symbol=symbol, pid=pid, retprobe=True)
                else:   # past a single-stepped first instruction (probes/emulated.py)
                    attach_entry_uprobe(prog, obj, entry, symbol, pid)
    except BaseException:
        prog.close()
        raise
    return Memleak(prog, symbolizer, pid=pid, kernel=kernel, unwinding=unwinding)


def report_text(stacks: list[Outstanding], top: int, addresses: bool) -> str:
    shown = stacks[-top:]
    out = [f"[{time.strftime('%H:%M:%S')}] Top {len(shown)} stacks with outstanding allocations:"]
    if addresses:
        for entry in shown:
            out += [f"\taddr = {addr:x} size = {size}" for addr, size in sorted(entry.addresses)]
    for entry in shown:
        out.append(f"\t{entry.size} bytes in {entry.count} allocations from stack")
        if entry.stack_id < 0 and not entry.stack_hash:
            out.append("\t\t[stack not stored]")
        out += [f"\t\t{f.name}" for f in entry.frames]
    return "\n".join(out)


def report_json(stacks: list[Outstanding], top: int, addresses: bool) -> list[dict[str, Any]]:
    objs = []
    for entry in reversed(stacks[-top:]):
        obj: dict[str, Any] = {"type": "outstanding", "bytes": entry.size,
                               "allocations": entry.count,
                               "frames": [{"name": function_name(f), "kind": f.kind}
                                          for f in entry.frames]}
        if addresses:
            obj["addresses"] = [{"address": a, "size": s} for a, s in sorted(entry.addresses)]
        objs.append(obj)
    return objs


@click.command("memleak", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-a", "--show-allocs", "addresses", is_flag=True,
              help="Show the address and size of each outstanding allocation.")
@click.option("-o", "--older",
              type=options.Finite(min=0, max=MAX_SECONDS_MS), default=500, show_default=True,
              help="Only allocations older than this many milliseconds.")
@click.option("-c", "--command", "command_line", default=None,
              help="Run this command line and trace it (BCC's -c).")
@click.option("--combined-only", is_flag=True,
              help="Use the per-stack totals kept in the kernel (cheaper; ignores -o, -a).")
@click.option("-s", "--sample-rate", type=click.IntRange(min=1), default=1, show_default=True,
              help="Record one allocation in this many.")
@click.option("-T", "--top", type=click.IntRange(min=1), default=10, show_default=True,
              help="Print this many stacks.")
@click.option("-z", "--min-size", type=click.IntRange(min=0), default=None,
              help="Ignore allocations smaller than this many bytes.")
@click.option("-Z", "--max-size", type=click.IntRange(min=0), default=None,
              help="Ignore allocations larger than this many bytes.")
@click.option("-O", "--obj", default="c", show_default=True,
              help="The library (or binary) whose allocators to probe.")
@click.option("--max-allocs", type=click.IntRange(1, options.MAX_MAP_ENTRIES), default=1000000, show_default=True,
              help="Outstanding allocations the kernel map can hold (more are counted as lost).")
@ustacks.unwind_option()
@options.duration_option("-d")
@options.interval_option("-i")
@options.output_options()
@options.standard
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(pid, addresses, older, command_line, combined_only, sample_rate, top, min_size,
            max_size, obj, max_allocs, unwind, duration, interval, out, args):
    """Outstanding memory allocations by stack (possible leaks).

    ARGS: [interval [count]] and/or -- COMMAND to run and trace. The default
    interval is 5 seconds, as in BCC.
    """
    pos_interval, count, cmd = options.split_interval_count(args)
    interval = interval or pos_interval or 5.0
    if command_line:
        if cmd:
            raise UsageError("give either -c COMMAND or -- COMMAND, not both")
        cmd = tuple(shlex.split(command_line))
    if min_size is not None and max_size is not None and min_size > max_size:
        raise UsageError(f"-z {min_size} is larger than -Z {max_size}")
    target = Target.from_options(pid, cmd)
    message = (f"Attaching to pid {target.pid}, Ctrl+C to quit." if target.pid else
               "Attaching to kernel allocators, Ctrl+C to quit.")
    with attached(target, lambda: start(pid=target.pid, obj=obj, sample_rate=sample_rate,
                                        min_size=min_size, max_size=max_size,
                                        max_allocs=max_allocs,
                                        command=cmd, unwind=unwind),
                  message) as tool:
        def report(final: bool) -> None:
            stacks = tool.read(older_ms=older, combined_only=combined_only,
                               addresses=addresses)
            out.emit(text=lambda: report_text(stacks, top, addresses),
                     json=lambda: report_json(stacks, top, addresses))

        run_periodic(target, duration=duration, interval=interval, count=count,
                     report=report, poll=tool.poll)
        out.loss(tool.loss())

"""mutexstat: user-space pthread mutex contention by mutex and calling stack.

uprobes on the entries of pthread_mutex_lock and pthread_mutex_unlock in the
target's libc (and of pthread_cond_*wait), the futex tracepoints; no return
probe (bpf/mutexstat.bpf.c says how). Per (mutex, stack): acquisitions, how
many had to sleep in futex() (contended), the time those waited (avg, max,
total), and hold times. Mutexes that are globals are named from the binary's
symbol table. With -i/--interval, a table every SECONDS covering only that
interval: an acquisition, with its wait and its hold, counts in the interval
where the mutex is unlocked.
Stacks are unwound in the kernel from CFI (--unwind dwarf, ustacks.py), so
code built without frame pointers has whole stacks; --unwind fp follows
frame pointers.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import click

from ..cli import options
from ..symbolize.datasyms import user_data_symbol
from ..families.intervals import entries, run_interval_tables, stamped
from ..engine.loader import Program
from ..errors import NotFoundError
from ..model import Frame
from ..families.periodic import BpfTool, attached, command_only, require_alive, require_tracepoints
from ..engine.runner import Target
from ..probes.emulated import attach_entry_uprobe
from ..symbolize.symbols import Symbolizer, function_name
from ..collect import user_stacks as ustacks
from ..collect.user_stacks import EventUnwinding, UnwindingToolMixin
from .klockstat import format_ns

DRY_RUN_ARGS = ["-p", "1"]
# a lock call has ended when its thread waits on a condition variable (whose
# relock of the mutex, inside, is no lock call of its own)
COND_WAITS = ("pthread_cond_wait", "pthread_cond_timedwait", "pthread_cond_clockwait")
SORT_KEYS = ("wait_total", "contended", "acquisitions", "wait_max", "hold_total")


@dataclass
class MutexSite:
    mutex: int
    mutex_name: str
    pid: int
    frames: list[Frame]
    acquisitions: int
    contended: int
    wait_total_ns: int
    wait_max_ns: int
    hold_total_ns: int
    hold_max_ns: int
    holds: int

    def sort_value(self, key: str) -> int:
        return {"wait_total": self.wait_total_ns, "contended": self.contended,
                "acquisitions": self.acquisitions, "wait_max": self.wait_max_ns,
                "hold_total": self.hold_total_ns}[key]

    def as_dict(self) -> dict[str, Any]:
        return {"type": "mutex", "mutex": self.mutex, "mutex_name": self.mutex_name,
                "pid": self.pid, "acquisitions": self.acquisitions,
                "contended": self.contended, "wait_total_ns": self.wait_total_ns,
                "wait_max_ns": self.wait_max_ns, "hold_total_ns": self.hold_total_ns,
                "hold_max_ns": self.hold_max_ns, "holds": self.holds,
                "frames": [function_name(f) for f in self.frames]}


@dataclass
class Mutexstat(UnwindingToolMixin, BpfTool):
    names: dict[tuple[int, int], str] = field(default_factory=dict)
    unwinding: EventUnwinding | None = None   # --unwind dwarf
    fp_walks: dict[int, bool] = field(default_factory=dict)   # stack hash -> in user_stacks

    def _name(self, pid: int, mutex: int) -> str:
        name = self.names.get((pid, mutex))
        if name is None:
            name = user_data_symbol(pid, mutex)
            if name is None:
                return f"{mutex:#x}"     # maybe not mapped yet: try again later
            self.names[(pid, mutex)] = name
        return name

    def _frames(self, key: Any) -> list[Frame]:
        """The site's stack, the lock's caller first. Taken at the lock's entry,
        its leaf is pthread_mutex_lock: unwound from CFI, the frames after it; a
        frame-pointer walk (--unwind fp, or a process not loaded yet), which
        skips the caller there, the caller's return address then the frames
        after the leaf."""
        if key.user_stack_hash:
            # (a frame-pointer fallback is rooted in its marker frame)
            frames = self.symbolizer.marked_unwound_stack(key.user_stack_hash, key.pid)
            if key.caller and self._walked_by_frame_pointers(key.user_stack_hash):
                return [self.symbolizer.user(key.caller, key.pid), *frames[1:]]
            return frames[1:]
        walked = self.symbolizer.stack(self.prog["user_stacks"], key.stack_id, pid=key.pid)
        if not key.caller:
            return walked[1:]
        return [self.symbolizer.user(key.caller, key.pid), *walked[1:]]

    def _walked_by_frame_pointers(self, stack_hash: int) -> bool:
        """The stack is in `user_stacks` (ptk_ustack.h's frame-pointer walks),
        not the unwinder's `ustacks`; remembered (a stored stack never changes)."""
        known = self.fp_walks.get(stack_hash)
        if known is None:
            table = self.prog["user_stacks"]
            try:
                table[table.Key(stack_hash)]
                known = True
            except KeyError:
                known = False
            self.fp_walks[stack_hash] = known
        return known

    def warm(self) -> None:
        """Name mutexes and stacks while the process is alive."""
        for key, _ in self.prog["stats"].items():
            self._name(key.pid, key.mutex)
            self._frames(key)

    def read(self, clear: bool = False) -> list[MutexSite]:
        """Per site; with clear, since the last clearing read (the in-flight
        in_lock/held maps and the stacks they refer to are kept)."""
        sites = []
        for key, st in entries(self.prog["stats"], clear):
            frames = self._frames(key)
            sites.append(MutexSite(key.mutex, self._name(key.pid, key.mutex), key.pid, frames,
                                   st.acquisitions, st.contended, st.wait_total_ns,
                                   st.wait_max_ns, st.hold_total_ns, st.hold_max_ns, st.holds))
        return sites



def start(*, pid: int, obj: str = "c", show_offsets: bool = True,
          command: tuple[str, ...] = (), unwind: str = "dwarf", **_: Any) -> Mutexstat:
    """`command`: the held command whose pid is `pid`."""
    require_tracepoints("mutexstat", "syscalls:sys_enter_futex", "syscalls:sys_exit_futex")
    prog = Program.from_file("mutexstat", defines={
        "FILTER_PID": pid, **ustacks.defines(unwind, user=True, storage=16384,
                                             command_pid=pid if command else 0)})
    symbolizer = Symbolizer(prog.bpf, show_module=show_offsets, show_offset=show_offsets)
    symbolizer.fp_ustacks = prog["user_stacks"]   # frame-pointer walks by hash (ptk_ustack.h)
    try:
        require_alive(pid)
        unwinding = EventUnwinding.setup(prog, symbolizer, pids=[pid], command=command,
                                         command_pid=pid)
        attach_entry_uprobe(prog, obj, "lock_enter", "pthread_mutex_lock", pid)
        attach_entry_uprobe(prog, obj, "unlock_enter", "pthread_mutex_unlock", pid)
        for wait in COND_WAITS:
            with contextlib.suppress(NotFoundError):     # an older libc lacks clockwait
                prog.attach_uprobe(obj, "settle", symbol=wait, pid=pid)
    except BaseException:
        prog.close()
        raise
    return Mutexstat(prog, symbolizer, unwinding=unwinding)


def render(sites: list[MutexSite], *, sort: str = "wait_total", limit: int | None = None,
           depth: int = 8, all_sites: bool = False) -> str:
    shown = [s for s in sites if all_sites or s.contended]
    shown.sort(key=lambda s: (-s.sort_value(sort), s.mutex))
    header = (f"{'Mutex':<32} {'Acquired':>9} {'Contended':>10} {'Avg wait':>10} "
              f"{'Max wait':>10} {'Total wait':>11} {'Avg hold':>10} {'Max hold':>10}")
    out = [header]
    for s in shown[:limit]:
        avg_wait = s.wait_total_ns // s.contended if s.contended else 0
        avg_hold = s.hold_total_ns // s.holds if s.holds else 0
        out.append(f"{s.mutex_name[:32]:<32} {s.acquisitions:>9} {s.contended:>10} "
                   f"{format_ns(avg_wait):>10} {format_ns(s.wait_max_ns):>10} "
                   f"{format_ns(s.wait_total_ns):>11} {format_ns(avg_hold):>10} "
                   f"{format_ns(s.hold_max_ns):>10}")
        out += [f"    {f.name}" for f in s.frames[:depth]]
        if not s.frames:
            out.append("    [stack not stored]")
    return "\n".join(out)


@click.command("mutexstat", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-n", "--top", "limit", type=click.IntRange(min=1), default=None,
              help="Print only this many mutex/stack sites.")
@click.option("-s", "--stack-depth", "depth", type=click.IntRange(min=0), default=8,
              show_default=True, help="Frames to print per stack.")
@click.option("-S", "--sort", type=click.Choice(SORT_KEYS), default="wait_total",
              show_default=True, help="Sort sites by this value.")
@click.option("-a", "--all", "all_sites", is_flag=True,
              help="Also list sites that were never contended.")
@click.option("-O", "--obj", default="c", show_default=True,
              help="The library holding pthread_mutex_lock.")
@ustacks.unwind_option()
@options.duration_option("-d")
@options.interval_option("-i")
@options.output_options()
@options.standard
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(pid, limit, depth, sort, all_sites, obj, unwind, duration, interval, out,
            command):
    """pthread mutex contention by mutex and calling stack (-p PID or -- COMMAND)."""
    cmd = command_only(command, "mutexstat")
    if not pid and not cmd:
        raise click.UsageError("give -p PID or -- COMMAND: uprobes need a process to watch")
    target = Target.from_options(pid, cmd)
    with attached(target, lambda: start(pid=target.pid, obj=obj, command=cmd, unwind=unwind),
                  f"Tracing pthread mutexes of pid {target.pid}... Hit Ctrl-C to end.") as tool:
        def print_table(stamp: dict[str, Any]) -> None:
            sites = tool.read(clear=True)
            shown = sorted((s for s in sites if all_sites or s.contended),
                           key=lambda s: (-s.sort_value(sort), s.mutex))[:limit]
            out.emit(text=lambda: render(sites, sort=sort, limit=limit, depth=depth,
                                         all_sites=all_sites),
                     json=lambda: [stamped(s.as_dict(), stamp) for s in shown])
        run_interval_tables(target, print_table, duration=duration, interval=interval,
                            out=out, poll=tool.poll)
        out.loss(tool.loss())

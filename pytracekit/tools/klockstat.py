"""klockstat: kernel lock contention by lock and calling kernel stack.

From lock:contention_begin/contention_end (BCC's klockstat needs kprobes on
mutex functions; these tracepoints cover mutexes, rwsems, spinlocks and
rt-mutexes). Per lock and stack: count, average, maximum and total wait.
A lock that is a kernel global is named from /proc/kallsyms when the kernel
lists data symbols (CONFIG_KALLSYMS_ALL); otherwise its address is shown.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..symbolize.datasyms import kernel_data_symbol
from ..engine.loader import Program
from ..collect.mapdrain import drained
from ..model import Frame
from ..families.periodic import BpfTool, attached, command_only, require_tracepoints, run_periodic
from ..engine.runner import Target
from ..symbolize.symbols import Symbolizer, function_name
from ..textsafe import cstr

DRY_RUN_ARGS: list[str] = []
SORT_KEYS = ("wait_total", "wait_max", "wait_avg", "count")
# lock:contention_begin flags (include/trace/events/lock.h)
LCB_FLAGS = [(1, "spin"), (2, "read"), (4, "write"), (8, "rt"), (16, "percpu"), (32, "mutex")]
# Frames inside the locking code: the caller is the first frame past them.
LOCK_INTERNALS = ("*lock*", "*rwsem*", "*mutex*", "down_*", "__down*", "*_slowpath*",
                  "*contention*", "up_*", "*percpu_*sem*", "schedule*", "__schedule")


def format_ns(ns: float) -> str:
    """Wait times as klockstat prints them: ns, us, ms or s."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.1f} {unit}"
    return f"{int(ns)} ns"


def lock_kind(flags: int) -> str:
    names = [n for bit, n in LCB_FLAGS if flags & bit]
    return "+".join(names) if names else "sleep"


def caller_of(frames: list[Frame]) -> Frame | None:
    for frame in frames:
        base = frame.name.split("+")[0]
        if not any(fnmatch.fnmatchcase(base, pat) for pat in LOCK_INTERNALS):
            return frame
    return frames[-1] if frames else None


@dataclass
class LockSite:
    lock: int
    lock_name: str
    kind: str
    frames: list[Frame]        # leaf first
    count: int
    total_ns: int
    max_ns: int
    max_comm: str
    max_pid: int

    @property
    def caller(self) -> str:
        frame = caller_of(self.frames)
        return frame.name if frame else "[stack not stored]"

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.count if self.count else 0.0

    def sort_value(self, key: str) -> float:
        return {"wait_total": self.total_ns, "wait_max": self.max_ns, "wait_avg": self.avg_ns,
                "count": self.count}[key]

    def as_dict(self) -> dict[str, Any]:
        """The JSON form: functions named without the offsets the text shows."""
        caller = caller_of(self.frames)
        return {"type": "lock", "lock": self.lock, "lock_name": self.lock_name,
                "kind": self.kind,
                "caller": function_name(caller) if caller else "[stack not stored]",
                "count": self.count,
                "wait_total_ns": self.total_ns, "wait_avg_ns": round(self.avg_ns),
                "wait_max_ns": self.max_ns, "max_comm": self.max_comm, "max_pid": self.max_pid,
                "frames": [function_name(f) for f in self.frames]}


@dataclass
class Klockstat(BpfTool):

    def read(self) -> list[LockSite]:
        sites = []
        for key, st in self.prog["stats"].items():
            frames = self.symbolizer.hashed_kernel_stack(key.stack_hash)   # ptk_kstack.h
            name = kernel_data_symbol(key.lock) or f"{key.lock:#x}"
            sites.append(LockSite(key.lock, name, lock_kind(key.flags), frames, st.count,
                                  st.total_ns, st.max_ns, cstr(st.max_comm),
                                  st.max_pid))
        return sites

    def clear(self) -> None:
        self.prog["stats"].clear()



def start(*, pid: int = 0, tid: int = 0, show_offsets: bool = True, **_: Any) -> Klockstat:
    require_tracepoints("klockstat", "lock:contention_begin", "lock:contention_end")
    prog = Program.from_file("klockstat", defines={"FILTER_PID": pid or 0, "FILTER_TID": tid or 0})
    symbolizer = Symbolizer(prog.bpf, show_offset=show_offsets)
    symbolizer.kstacks = prog["kstacks"]
    return Klockstat(prog, symbolizer)


def select(sites: list[LockSite], *, caller: str | None = None, lock: str | None = None,
           sort: str = "wait_total", limit: int | None = None) -> list[LockSite]:
    chosen = [s for s in sites
              if (caller is None or fnmatch.fnmatchcase(s.caller.split("+")[0], caller))
              and (lock is None or fnmatch.fnmatchcase(s.lock_name.split("+")[0], lock)
                   or lock == f"{s.lock:#x}")]
    chosen.sort(key=lambda s: (-s.sort_value(sort), s.lock))
    return chosen[:limit]


def render(sites: list[LockSite], depth: int = 8) -> str:
    out = [f"{'Lock':<24} {'Kind':<10} {'Caller':<34} {'Avg Wait':>10} {'Count':>8} "
           f"{'Max Wait':>10} {'Total Wait':>11}"]
    for s in sites:
        out.append(f"{s.lock_name[:24]:<24} {s.kind:<10} {s.caller[:34]:<34} "
                   f"{format_ns(s.avg_ns):>10} {s.count:>8} {format_ns(s.max_ns):>10} "
                   f"{format_ns(s.total_ns):>11}")
        out += [f"{'':<36}{f.name}" for f in s.frames[:depth]]
        out.append(f"{'':<36}max wait by {s.max_comm} [{s.max_pid}]")
    return "\n".join(out)


@click.command("klockstat", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("-c", "--caller", default=None, help="Only callers matching this glob.")
@click.option("-L", "--lock", default=None, help="Only locks with this name (glob) or address.")
@click.option("-n", "--locks", "limit", type=click.IntRange(min=1), default=None,
              help="Print only this many lock/stack sites.")
@click.option("-s", "--stacks", "depth", type=click.IntRange(min=0), default=8,
              show_default=True, help="Frames to print per stack.")
@click.option("-S", "--sort", type=click.Choice(SORT_KEYS), default="wait_total",
              show_default=True, help="Sort by this value.")
@options.duration_option("-d")
@options.interval_option("-i")
@options.output_options()
@options.standard
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
def command(pid, tid, caller, lock, limit, depth, sort, duration, interval, out, command):
    """Kernel lock contention by lock and kernel stack."""
    cmd = command_only(command, "klockstat")
    target = Target.from_options(pid, cmd)
    with attached(target, lambda: start(pid=target.pid, tid=tid or 0),
                  "Tracing kernel lock contention... Hit Ctrl-C to end.") as tool:
        def report(final: bool) -> None:
            with drained(tool.prog, [] if final else ["stats"]):
                read = tool.read()
            sites = select(read, caller=caller, lock=lock, sort=sort, limit=limit)
            out.emit(text=lambda: render(sites, depth), json=lambda: [s.as_dict() for s in sites])
        run_periodic(target, duration=duration, interval=interval, count=None,
                     report=report)
        out.loss(tool.loss())

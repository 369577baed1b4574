"""The per-switch records of bpf/timehist.bpf.c (timehist, timechart): their
layout, the task states they carry, and the program's loading."""
from __future__ import annotations

from dataclasses import dataclass

from ..engine import follow
from . import stream
from ..engine.runner import Target
from ..textsafe import cstr

FIELDS = stream.layout("timehist")   # struct event in bpf/timehist.bpf.c
KIND_SWITCH, KIND_BLOCK_ISSUE, KIND_BLOCK_COMPLETE = 0, 1, 2
STATE_UNKNOWN = 0xFFFFFFFF
# The tracepoints do not see every switch and wakeup (bpf/timehist.bpf.c says when)
FLAG_START_UNSEEN, FLAG_WAKEUP_UNSEEN = 1, 2
TASK_IDLE = 0x402       # TASK_UNINTERRUPTIBLE | TASK_NOLOAD: an idle kernel thread
# prev_state bits as `ps` letters them (include/linux/sched.h), first match wins
_STATE_LETTERS = ((0x01, "S"), (0x02, "D"), (0x04, "T"), (0x08, "t"), (0x10, "X"),
                  (0x20, "Z"), (0x80, "X"), (0x40, "P"))


def state_letter(state: int) -> str | None:
    """R (runnable: preempted), S, D, I ... as perf sched timehist --state
    shows them; None for a state never seen (a wait that began before tracing)."""
    if state == STATE_UNKNOWN:
        return None
    if state == 0:
        return "R"
    if state & TASK_IDLE == TASK_IDLE:
        return "I"
    for bit, letter in _STATE_LETTERS:
        if state & bit:
            return letter
    return "?"


@dataclass(frozen=True)
class Switch:
    """One run of a task, ended by a switch-out at `ts_ns`."""
    ts_ns: int
    cpu: int
    pid: int
    tid: int
    comm: str
    wait_ns: int        # from the switch-out before this run to its switch-in
    delay_ns: int       # from its wakeup to the run (0 after a preemption, as in perf)
    run_ns: int
    wait_state: str | None   # how the wait began: S sleep, D uninterruptible, R preempted
    state: str               # how this run ended
    start_seen: bool = True  # False: switched in unseen; run_ns is an upper bound
    wakeup_seen: bool = True  # False: woken unseen; delay_ns (0) is unknown

    @property
    def run_start_ns(self) -> int:
        return self.ts_ns - self.run_ns


@dataclass(frozen=True)
class BlockEvent:
    ts_ns: int
    complete: bool
    dev: int
    sector: int
    bytes: int


def record(row: tuple) -> Switch | BlockEvent:
    (ts, run, wait, delay, pid, tid, cpu, kind, wait_state, state, size, flags, comm) = row
    if kind == KIND_SWITCH:
        return Switch(ts, cpu, pid, tid, cstr(comm), wait, delay, run,
                      state_letter(wait_state), state_letter(state) or "?",
                      not flags & FLAG_START_UNSEEN, not flags & FLAG_WAKEUP_UNSEEN)
    return BlockEvent(ts, kind == KIND_BLOCK_COMPLETE, state, run, size)


def start(target: Target, *, tid: int = 0, block_io: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    """The tasks of -p PID, of a command and the processes it forks, or all."""
    pages = stream.check_buffer_pages(buffer_pages)
    defines = {"FILTER_TID": tid or 0, "BLOCK_IO": block_io, "BUFFER_PAGES": pages,
               "WAKEUP_BYTES": stream.wakeup_bytes(pages * stream.PAGE_SIZE)}
    return stream.EventStream(follow.load("timehist", target, defines), FIELDS)

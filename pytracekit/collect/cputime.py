"""CPU time per task between refreshes, from top.bpf.c's cumulative counters.

Pure logic: each refresh takes the map's cumulative ns per thread plus the
slice each CPU is still running, and returns what every thread (and process)
used since the previous refresh. Entries of exited tasks are dropped only
once a refresh has reported them, so short-lived processes are never lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class TaskTime:
    tid: int
    tgid: int
    comm: str
    ns: int            # cumulative on-CPU ns seen so far
    exited: bool = False
    before_ns: int = 0 # on-CPU ns before tracing began (top's TIME+ is the lifetime's)


@dataclass
class Usage:
    """One row: a thread (tid set) or a process (tid 0)."""
    pid: int
    tid: int
    comm: str
    delta_ns: int           # on-CPU time in this interval
    total_ns: int           # on-CPU time in the task's lifetime (top's TIME+)
    threads: int = 1
    exited: bool = False

    def cpu_pct(self, interval_ns: int) -> float:
        return 100.0 * self.delta_ns / interval_ns if interval_ns else 0.0


@dataclass
class Refresh:
    interval_ns: int
    threads: list[Usage]
    processes: list[Usage]
    idle_ns: int
    ncpu: int

    @property
    def busy_pct(self) -> float:
        capacity = self.interval_ns * self.ncpu
        return max(0.0, 100.0 * (1 - self.idle_ns / capacity)) if capacity else 0.0


@dataclass
class Accountant:
    ncpu: int
    previous: dict[int, int] = field(default_factory=dict)   # tid -> cumulative ns
    last_ns: int | None = None

    def refresh(self, entries: list[TaskTime], in_progress: dict[int, int],
                now_ns: int, alive=lambda tid: True) -> tuple[Refresh, list[int]]:
        """`in_progress`: tid -> ns of the slice running right now (tasks that
        never switched out yet come as entries with ns 0). Returns the refresh
        and the tids whose map entries can be deleted."""
        interval = now_ns - self.last_ns if self.last_ns is not None else 0
        self.last_ns = now_ns
        threads, idle, forget = [], 0, []
        current: dict[int, int] = {}
        for e in entries:
            total = e.ns + in_progress.get(e.tid, 0)
            delta = max(0, total - self.previous.get(e.tid, 0))
            current[e.tid] = total
            if e.tid == 0:
                idle += delta
                continue
            if delta == 0 and (e.exited or not alive(e.tid)):
                forget.append(e.tid)      # gone, and reported in an earlier refresh
                continue
            threads.append(Usage(e.tgid, e.tid, e.comm, delta, total + e.before_ns,
                                 exited=e.exited))
        self.previous = {t: ns for t, ns in current.items() if t not in forget}
        return Refresh(interval, threads, by_process(threads), idle, self.ncpu), forget


def by_process(threads: list[Usage]) -> list[Usage]:
    procs: dict[int, Usage] = {}
    for t in threads:
        p = procs.get(t.pid)
        if p is None:
            procs[t.pid] = Usage(t.pid, 0, t.comm, t.delta_ns, t.total_ns, 1, t.exited)
            continue
        p.delta_ns += t.delta_ns
        p.total_ns += t.total_ns
        p.threads += 1
        p.exited = p.exited and t.exited
        if t.tid == t.pid:
            p.comm = t.comm          # the process is named after its main thread
    return list(procs.values())


SORT_KEYS = {
    "cpu": lambda u: (-u.delta_ns, u.pid, u.tid),
    "pid": lambda u: (u.pid, u.tid),
    "comm": lambda u: (u.comm, u.pid, u.tid),
    "time": lambda u: (-u.total_ns, u.pid, u.tid),
}


def sorted_rows(rows: list[Usage], key: str) -> list[Usage]:
    return sorted(rows, key=SORT_KEYS[key])



def shown_rows(refresh: Refresh, threads: bool, sort: str, pids: set[int] | None) -> list:
    """The rows top shows: tasks that ran this interval (of `pids`, when given), sorted."""
    rows = refresh.threads if threads else refresh.processes
    return sorted_rows([r for r in rows if r.delta_ns and (pids is None or r.pid in pids)],
                       sort)
"""systrace -s: per thread, per system call: calls, errors, total, min, avg,
max and the relative standard deviation of the mean, as `perf trace -s`
prints them (perf's stddev: sqrt(variance / n) as a percentage of the mean)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class CallStats:
    calls: int = 0
    errors: int = 0
    total_ns: int = 0
    min_ns: int = 0
    max_ns: int = 0
    _mean: float = 0.0      # Welford's running mean and sum of squared deviations
    _m2: float = 0.0

    def add(self, duration_ns: int, failed: bool) -> None:
        self.calls += 1
        self.errors += failed
        self.total_ns += duration_ns
        self.min_ns = duration_ns if self.calls == 1 else min(self.min_ns, duration_ns)
        self.max_ns = max(self.max_ns, duration_ns)
        delta = duration_ns - self._mean
        self._mean += delta / self.calls
        self._m2 += delta * (duration_ns - self._mean)

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.calls if self.calls else 0.0

    @property
    def stddev_pct(self) -> float:
        """perf's rel_stddev_stats(stddev_stats()): the mean's standard error, in %."""
        if self.calls < 2 or not self.avg_ns:
            return 0.0
        return 100 * math.sqrt(self._m2 / (self.calls - 1) / self.calls) / self.avg_ns


@dataclass
class ThreadStats:
    pid: int
    tid: int
    comm: str
    calls: dict[str, CallStats] = field(default_factory=dict)

    @property
    def events(self) -> int:
        return sum(s.calls for s in self.calls.values())


class Summary:
    def __init__(self) -> None:
        self.threads: dict[int, ThreadStats] = {}

    def add(self, pid: int, tid: int, comm: str, syscall: str, duration_ns: int,
            failed: bool) -> None:
        thread = self.threads.get(tid)
        if thread is None:
            thread = self.threads[tid] = ThreadStats(pid, tid, comm)
        thread.comm = comm                     # the latest (after an exec)
        thread.calls.setdefault(syscall, CallStats()).add(duration_ns, failed)

    def ordered(self) -> list[tuple[ThreadStats, list[tuple[str, CallStats]]]]:
        """Threads by calls, most first; each one's calls by total time, as perf sorts."""
        threads = sorted(self.threads.values(), key=lambda t: (-t.events, t.tid))
        return [(t, sorted(t.calls.items(), key=lambda kv: (-kv[1].total_ns, kv[0])))
                for t in threads]

    def text(self) -> str:
        total = sum(t.events for t in self.threads.values()) or 1
        out = ["", " Summary of events:", ""]
        for thread, calls in self.ordered():
            out += [f" {thread.comm} ({thread.tid}), {thread.events} events, "
                    f"{100 * thread.events / total:.1f}%", "",
                    f"   {'syscall':<15} {'calls':>8}  {'errors':>6} {'total':>8} {'min':>9} "
                    f"{'avg':>9} {'max':>9}     {'stddev':>6}",
                    f"   {'':<15} {'':>8}  {'':>6} {'(msec)':>8} {'(msec)':>9} {'(msec)':>9} "
                    f"{'(msec)':>9}     {'(%)':>6}",
                    f"   {'-' * 15} {'-' * 8}  {'-' * 6} {'-' * 8} {'-' * 9} {'-' * 9} "
                    f"{'-' * 9}     {'-' * 6}"]
            for name, s in calls:
                out.append(f"   {name:<15} {s.calls:>8}  {s.errors:>6} {s.total_ns / 1e6:8.3f} "
                           f"{s.min_ns / 1e6:9.3f} {s.avg_ns / 1e6:9.3f} {s.max_ns / 1e6:9.3f}"
                           f"     {s.stddev_pct:5.2f}%")
            out.append("")
        return "\n".join(out)

    def objects(self) -> list[dict]:
        return [{"type": "summary", "pid": t.pid, "tid": t.tid, "comm": t.comm,
                 "syscall": name, "calls": s.calls, "errors": s.errors,
                 "total_ms": round(s.total_ns / 1e6, 6), "min_ms": round(s.min_ns / 1e6, 6),
                 "avg_ms": round(s.avg_ns / 1e6, 6), "max_ms": round(s.max_ns / 1e6, 6),
                 "stddev_pct": round(s.stddev_pct, 2)}
                for t, calls in self.ordered() for name, s in calls]

"""top's text: a header line and the table, for batch mode and the terminal UI. Pure."""
from __future__ import annotations

import time

from ..collect.cputime import Refresh, Usage


def cpu_time(ns: int) -> str:
    """top's TIME+: minutes:seconds.hundredths."""
    hundredths = ns // 10_000_000
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes}:{rest // 100:02d}.{rest % 100:02d}"


def header(r: Refresh, clock: float | None = None) -> str:
    """Counts are of the processes and threads that ran in the interval."""
    stamp = time.strftime("%H:%M:%S", time.localtime(clock))
    return (f"top - {stamp}  {r.ncpu} CPUs  interval {r.interval_ns / 1e9:.2f} s  "
            f"busy {r.busy_pct:.1f}%  idle {100 - r.busy_pct:.1f}%  "
            f"processes {sum(1 for p in r.processes if p.delta_ns)}  "
            f"threads {sum(1 for t in r.threads if t.delta_ns)}")


def columns(threads: bool) -> str:
    first = f"{'PID':>7} {'TID':>7}" if threads else f"{'PID':>7} {'THR':>4}"
    return f"{first} {'COMM':<16} {'%CPU':>6} {'TIME+':>10}"


def row(u: Usage, interval_ns: int, threads: bool) -> str:
    first = f"{u.pid:>7} {u.tid:>7}" if threads else f"{u.pid:>7} {u.threads:>4}"
    return f"{first} {u.comm:<16} {u.cpu_pct(interval_ns):>6.1f} {cpu_time(u.total_ns):>10}"


def screen(r: Refresh, rows: list[Usage], threads: bool, limit: int | None = None,
           clock: float | None = None) -> list[str]:
    shown = rows if limit is None else rows[:limit]
    return [header(r, clock), "", columns(threads)] + [row(u, r.interval_ns, threads)
                                                      for u in shown]

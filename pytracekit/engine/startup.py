"""PYTRACEKIT_STARTUP_TIMES=1: where a run's start-up goes (bench/bench_startup.py).

Each step marks its end; once the probes are attached (runner.signal_ready) the
marks go to stderr, one line each: the step, the milliseconds since the previous
mark, and the CLOCK_MONOTONIC time (time.perf_counter's clock), so a launcher
that noted that clock before starting pytracekit can account for the
interpreter's own start too; then the process's CPU time so far. Kept until
then, not printed as made: the loader's compile runs while fd 2 is captured.
Off, a mark costs one test."""
from __future__ import annotations

import os
import sys
import time

ENV = "PYTRACEKIT_STARTUP_TIMES"
_marks: list[tuple[str, float]] | None = [] if os.environ.get(ENV, "") not in ("", "0") else None


def mark(step: str) -> None:
    if _marks is not None:
        _marks.append((step, time.perf_counter()))


def report() -> None:
    """Write the marks, once: the first attach is the start-up."""
    global _marks   # pylint: disable=global-statement
    if not _marks:
        return
    mark("attached")
    previous = _marks[0][1]
    for step, at in _marks:
        sys.stderr.write(f"pytracekit: start-up: {step} +{1000 * (at - previous):.1f} ms "
                         f"(at {at:.6f})\n")
        previous = at
    # the steady figure on a shared machine: wall time stretches with the load
    sys.stderr.write("pytracekit: start-up: CPU time to attached "
                     f"{1000 * time.process_time():.1f} ms (all threads, user + system)\n")
    sys.stderr.flush()
    _marks = None

"""PYTRACEKIT_END_TIMES=1: where the end of a run goes, from its end (the
duration, the command's exit or Ctrl-C) to the exit (bench/bench_profile.py,
issue 17). Each step marks its end; cli.command.run writes the marks to stderr
just before the interpreter exits, one line each: the step, the milliseconds
since the previous mark, and the CLOCK_MONOTONIC time (time.perf_counter's
clock), so the caller can account for the interpreter's exit after the last.
Off, a mark costs one test."""
from __future__ import annotations

import os
import sys
import time

ENV = "PYTRACEKIT_END_TIMES"
_marks: list[tuple[str, float]] | None = [] if os.environ.get(ENV, "") not in ("", "0") else None


def mark(step: str) -> None:
    if _marks is not None:
        _marks.append((step, time.perf_counter()))


def report() -> None:
    """Write the marks, once."""
    global _marks   # pylint: disable=global-statement
    if not _marks:
        return
    mark("exiting")
    previous = _marks[0][1]
    for step, at in _marks:
        sys.stderr.write(f"pytracekit: end: {step} +{1000 * (at - previous):.1f} ms "
                         f"(at {at:.6f})\n")
        previous = at
    sys.stderr.flush()
    _marks = None

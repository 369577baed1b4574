"""Step time marks for PYTRACEKIT_STARTUP_TIMES and PYTRACEKIT_END_TIMES (engine.startup,
engine.endtimes): each step marks its end; report() writes them to stderr once, one line
each: the step, the milliseconds since the previous mark, and the CLOCK_MONOTONIC time
(time.perf_counter's clock), so a caller that noted that clock can account for what came
before the first mark or after the last. Off, a mark costs one test."""
from __future__ import annotations

import os
import sys
import time


class StepTimes:
    def __init__(self, env: str, label: str, last_step: str, cpu_line: bool = False) -> None:
        self.env, self.label, self.last_step, self.cpu_line = env, label, last_step, cpu_line
        on = os.environ.get(env, "") not in ("", "0")
        self._marks: list[tuple[str, float]] | None = [] if on else None

    def mark(self, step: str) -> None:
        if self._marks is not None:
            self._marks.append((step, time.perf_counter()))

    def report(self) -> None:
        """Write the marks, once."""
        if not self._marks:
            return
        self.mark(self.last_step)
        previous = self._marks[0][1]
        for step, at in self._marks:
            sys.stderr.write(f"pytracekit: {self.label}: {step} "
                             f"+{1000 * (at - previous):.1f} ms (at {at:.6f})\n")
            previous = at
        if self.cpu_line:   # the steady figure on a shared machine: wall time follows load
            sys.stderr.write(f"pytracekit: {self.label}: CPU time to {self.last_step} "
                             f"{1000 * time.process_time():.1f} ms (all threads, user + system)\n")
        sys.stderr.flush()
        self._marks = None

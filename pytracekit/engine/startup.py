"""PYTRACEKIT_STARTUP_TIMES=1: where a run's start-up goes (bench/bench_startup.py).

Each step marks its end; once the probes are attached (runner.signal_ready) the
marks go to stderr (engine.steptimes), then the process's CPU time so far. Kept
until then, not printed as made: the loader's compile runs while fd 2 is captured."""
from __future__ import annotations

from .steptimes import StepTimes

ENV = "PYTRACEKIT_STARTUP_TIMES"
_times = StepTimes(ENV, "start-up", "attached", cpu_line=True)
mark = _times.mark
report = _times.report   # the first attach is the start-up

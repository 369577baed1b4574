"""PYTRACEKIT_END_TIMES=1: where the end of a run goes, from its end (the
duration, the command's exit or Ctrl-C) to the exit (bench/bench_profile.py,
issue 17). Each step marks its end; cli.command.run writes the marks to stderr
(engine.steptimes) just before the process exits, the last one "exiting", so
the caller can account for the interpreter's exit after it."""
from __future__ import annotations

from .steptimes import StepTimes

ENV = "PYTRACEKIT_END_TIMES"
_times = StepTimes(ENV, "end", "exiting")
mark = _times.mark
report = _times.report

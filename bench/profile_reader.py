"""`python -m bench.profile_reader PIDS HZ`: profile PIDS as `pytracekit profile -U` does
(in-kernel DWARF unwinding, Python frames) until SIGINT, then time reading and naming every
stack twice: cold (the first read of this fresh process: no symbol table, no code object
name loaded yet) and warm. Prints one JSON object with the times, the sample count and
this process's peak RSS, so the RSS is the profiler's alone."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(pids: str, hz: str) -> None:
    from pytracekit.engine.runner import run_until_done
    from pytracekit.tools import profile
    session = profile.start(pids=[int(p) for p in pids.split(",")], frequency=int(hz),
                            user_only=True, python=True)
    try:
        run_until_done(session.target)   # signals PYTRACEKIT_READY_FD; ends on SIGINT
        t0 = time.perf_counter()
        cold = session.read()
        t1 = time.perf_counter()
        session.read()
        t2 = time.perf_counter()
    finally:
        session.close()
    frames = sum(len(s.stack) * s.value for s in cold.samples)
    hwm = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines()
               if l.startswith("VmHWM:"))
    print(json.dumps({"samples": cold.total, "stacks": len(cold.samples),
                      "cold_s": t1 - t0, "warm_s": t2 - t1, "peak_rss_kib": hwm,
                      "frames": frames, "unknown_frames": cold.loss.unknown_frames}))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main(*sys.argv[1:3])

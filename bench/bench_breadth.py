"""Per-event cost of two of issue 16's snoops against the probe floor: the
workload's signal storm (`signals N`: 4N signals generated and handled) under
sigsnoop, and its thread storm (`threads N 0`: N pthread_creates) under
threadsnoop (a tracepoint plus a uprobe and uretprobe on pthread_create). The
floor is `pytracekit stat -e` on the same tracepoint (a counter in the kernel,
nothing sent to user space). Each traced run is paired with an untraced run
just before it; the cost is the median difference per event.

  PTK_BENCH_SIGNAL_ROUNDS=20000 PTK_BENCH_THREADS=5000 python -m bench breadth
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import time

from bench.common import PY, ROOT, median, table
from bench.bench_opensnoop import _workload

ROUNDS = int(os.environ.get("PTK_BENCH_SIGNAL_ROUNDS", "50000"))
THREADS = int(os.environ.get("PTK_BENCH_THREADS", "20000"))
RUNS = int(os.environ.get("PTK_BENCH_RUNS", "3"))


def _timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _under(tool: list[str], argv: list[str]) -> tuple[float, str]:
    """The workload's seconds while `pytracekit TOOL` runs (stdout to /dev/null), and
    the tool's stderr after Ctrl-C."""
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen([PY, "-m", "pytracekit", *tool], cwd=ROOT, pass_fds=(ready_w,),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTRACEKIT_READY_FD": str(ready_w)})
    os.close(ready_w)
    try:
        if not select.select([ready_r], [], [], 60)[0]:
            raise RuntimeError(f"{tool[0]} never became ready")
        seconds = _timed(argv)
        time.sleep(0.5)        # the reader drains
    finally:
        os.close(ready_r)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    return seconds, err


def _lost(stderr: str) -> str:
    match = re.search(r"(\d+) events captured, (\d+) lost", stderr)
    return f"{match[1]} captured, {match[2]} lost" if match else "-"


def _rows(what: str, argv: list[str], events: int, tools: list[tuple[str, list[str]]]):
    rows, bases = [], []
    for label, tool in tools:
        pairs = []
        for _ in range(RUNS):
            base = _timed(argv)
            pairs.append((base, _under(tool, argv)))
        bases += [b for b, _ in pairs]
        added = median([(run[0] - base) / events * 1e9 for base, run in pairs])
        rows.append([what, label, f"{median([r[0] for _, r in pairs]):.2f}", f"{added:.0f}",
                     _lost(pairs[-1][1][1])])
    rows.insert(0, [what, "untraced", f"{median(bases):.2f}", "-", "-"])
    return rows


def main() -> None:
    workload = _workload()
    rows = _rows(f"{4 * ROUNDS:,} signals", [workload, "signals", str(ROUNDS)], 4 * ROUNDS, [
        ("floor: stat -e signal:signal_generate", ["stat", "-e", "signal:signal_generate",
                                                   "-a"]),
        ("sigsnoop", ["sigsnoop"]),
    ])
    rows += _rows(f"{THREADS:,} threads", [workload, "threads", str(THREADS), "0"], THREADS, [
        ("floor: stat -e task:task_newtask", ["stat", "-e", "task:task_newtask", "-a"]),
        ("threadsnoop", ["threadsnoop"]),
    ])
    print(f"median of {RUNS} runs, each paired with an untraced run just before it; "
          f"system-wide tracing; {os.cpu_count()} CPUs.\n")
    print(table(["storm", "tracer", "workload s", "added ns/event", "last run"], rows))


if __name__ == "__main__":
    main()

"""stat/syscount/top: what counting costs the traced program, and start-up time.

The workload opens a file N times; its own elapsed time is measured bare, under
`pytracekit stat -e syscalls:sys_enter_openat`, under perf stat, and while
`pytracekit top` (sched_switch accounting) runs.
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

from bench.common import PY, ROOT, median, table, time_until_ready

WORKLOAD = str(ROOT / "tests" / "workload" / ".build" / "workload")
OPENS = "100000"


def _run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> None:
    marker = tempfile.mktemp(prefix="ptk-bench-")
    cmd = [WORKLOAD, "open", marker, OPENS]
    rows = []
    bare = median([_run(cmd) for _ in range(3)])
    rows.append(["bare", f"{bare:.3f}", "-"])
    ours = median([_run([PY, "-m", "pytracekit", "stat", "-e", "syscalls:sys_enter_openat",
                         "--", *cmd]) for _ in range(3)])
    rows.append(["pytracekit stat", f"{ours:.3f}", f"{ours / bare:.2f}x"])
    if shutil.which("perf"):
        perf = median([_run(["perf", "stat", "-e", "syscalls:sys_enter_openat", "--", *cmd])
                       for _ in range(3)])
        rows.append(["perf stat", f"{perf:.3f}", f"{perf / bare:.2f}x"])
    top = subprocess.Popen([PY, "-m", "pytracekit", "top", "-b", "-d", "1"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(3)
    under_top = median([_run(cmd) for _ in range(3)])
    top.terminate()
    top.wait()
    rows.append(["bare, while pytracekit top runs", f"{under_top:.3f}",
                 f"{under_top / bare:.2f}x"])
    print(table([f"workload open x{OPENS}", "seconds (median of 3)", "vs bare"], rows))
    ready_s, rss = time_until_ready([PY, "-m", "pytracekit", "syscount", "-L"], None)
    print()
    print(table(["start-up", "seconds to attached", "peak RSS MiB"],
                [["syscount -L", f"{ready_s:.2f}", f"{rss / 1024:.0f}"]]))

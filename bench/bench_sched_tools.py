"""Start-up cost and overhead of the scheduler, lock and memory tools.

For each tool: seconds until its probes are attached, its peak RSS, and how
much slower a workload that stresses the probed path runs while the tool
traces it (median of 3 runs each way). For kmem and mutexstat, also the
probe mechanism's floor in the same run (bench/floors.py: empty programs on
the same probe points): the tool's overhead less the floor is its own work.
"""
from __future__ import annotations

import os
import subprocess
import time

from .common import PY, ROOT, median, table, time_until_ready

WORKLOAD = str(ROOT / "tests" / "workload" / ".build" / "workload")
# tool arguments, and the workload mode that exercises what it probes
CASES = [
    (["runqlat"], ["sleep", "2000", "0"]),
    (["cpudist"], ["sleep", "2000", "0"]),
    (["schedlat"], ["sleep", "2000", "0"]),
    (["runqlen"], ["spin", "1"]),
    (["klockstat"], ["kcontend", "500"]),
    (["faults"], ["touch", "20000"]),
    (["kmem"], ["open", "/tmp/ptk-bench-file", "20000"]),
    (["memleak", "-p", "{pid}"], ["malloc", "200000", "64"]),
    (["mutexstat", "-p", "{pid}"], ["mutex", "500"]),
]
# empty programs on the probe points of these tools (bench/floors.py)
FLOORS = {"kmem": ["-m", "bench.floors", "kmem"],
          "mutexstat": ["-m", "bench.floors", "mutexstat", "{pid}"]}


def _timed_run(mode: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([WORKLOAD, *mode], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _timed_traced(args: list[str], mode: list[str], floor: bool = False) -> float:
    """The workload's run time with the tool attached (held at a go file for -p
    tools); `floor`: args are bench.floors arguments, not a tool's."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        proc = subprocess.Popen([WORKLOAD, "--go-file", go, *mode], stdout=subprocess.DEVNULL)
        argv = [PY, *([] if floor else ["-m", "pytracekit"]),
                *[a.replace("{pid}", str(proc.pid)) for a in args]]
        rfd, wfd = os.pipe()
        tool = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTRACEKIT_READY_FD": str(wfd)},
                                pass_fds=(wfd,), cwd=ROOT)
        os.close(wfd)
        os.read(rfd, 16)
        os.close(rfd)
        start = time.perf_counter()
        open(go, "w").close()
        proc.wait()
        elapsed = time.perf_counter() - start
        tool.send_signal(2)
        tool.communicate(timeout=60)
    return elapsed


def main() -> None:
    rows = []
    for args, mode in CASES:
        name = args[0]
        idle = subprocess.Popen([WORKLOAD, "sleep", "1", "60000"])   # something to attach to
        ready_args = [a.replace("{pid}", str(idle.pid)) for a in args]
        if "-p" not in args:
            ready_args += ["-d", "60"]
        try:
            ready, rss = time_until_ready([PY, "-m", "pytracekit", *ready_args], None)
        finally:
            idle.kill()
            idle.wait()
        base = median([_timed_run(mode) for _ in range(3)])
        traced = median([_timed_traced(args, mode) for _ in range(3)])
        rows.append([name, " ".join(mode), f"{ready:.2f}", f"{rss / 1024:.0f}",
                     f"{base * 1000:.0f}", f"{traced * 1000:.0f}",
                     f"{100 * (traced - base) / base:+.0f}%"])
        if name in FLOORS:
            floor = median([_timed_traced(FLOORS[name], mode, floor=True) for _ in range(3)])
            rows.append([f"({name}'s probes, empty)", " ".join(mode), "-", "-",
                         f"{base * 1000:.0f}", f"{floor * 1000:.0f}",
                         f"{100 * (floor - base) / base:+.0f}%"])
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end.\n")
    print(table(["tool", "workload", "ready (s)", "peak RSS (MiB)", "untraced (ms)",
                 "traced (ms)", "overhead"], rows))

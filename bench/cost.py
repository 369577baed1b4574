"""What a sampling profiler costs a CPU-bound Python load, and itself.

One worker per CPU runs a pure-Python counting loop for a fixed time once told
to start (so a profiler can attach to its pid first) and reports its loops, its
own CPU seconds and the wall seconds. Rounds alternate: alone, then under the
profiler; medians. Two rates: loops per CPU-second of the workers (sampling work
done in the kernel lands in their system time; other load on a shared machine,
which steals wall time, does not distort it) and loops per wall-second (a
profiler that stops its target to read it, like py-spy, shows there)."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from bench.common import PY, ROOT, cpu_seconds, median, perf_event_fds

DEBIAN_PYTHON = "/usr/bin/python3.11"
WORKER = """import sys, time
sys.stdin.readline()
wall0, cpu0, n = time.monotonic(), time.process_time(), 0
end = wall0 + {seconds}
while time.monotonic() < end:
    n += 1
print(n, time.process_time() - cpu0, time.monotonic() - wall0, flush=True)
"""
# start(pids, scratch_dir) -> the profiler processes, already sampling; scratch_dir is
# removed once they have ended
Starter = Callable[[list[int], str], list[subprocess.Popen]]


@dataclass
class Round:
    per_cpu_s: float
    per_wall_s: float
    own_cpu_pct: float = float("nan")   # the profiler's CPU over the window, % of one CPU


def _run_workers(n: int, seconds: float, start: Starter | None) -> Round:
    workers = [subprocess.Popen([DEBIAN_PYTHON, "-c", WORKER.format(seconds=seconds)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for _ in range(n)]
    scratch = tempfile.mkdtemp(prefix="ptk-bench-cost-")
    profilers = start([w.pid for w in workers], scratch) if start else []
    try:
        before = sum(cpu_seconds(p.pid) for p in profilers)
        t0 = time.monotonic()
        for w in workers:
            w.stdin.write("go\n")
            w.stdin.flush()
        outs = [w.communicate(timeout=seconds + 120)[0].split() for w in workers]
        window = time.monotonic() - t0
        own = sum(cpu_seconds(p.pid) for p in profilers) - before
    finally:
        for p in profilers:
            stop(p)
        shutil.rmtree(scratch, ignore_errors=True)
    loops = sum(int(o[0]) for o in outs)
    return Round(loops / sum(float(o[1]) for o in outs), loops / sum(float(o[2]) for o in outs),
                 100 * own / window if profilers else float("nan"))


def stop(proc: subprocess.Popen, timeout: float = 120) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def compare(start: Starter, rounds: int, seconds: float) -> dict:
    """Medians over `rounds` of (alone, under the profiler) pairs, one worker per CPU."""
    ncpu = os.cpu_count() or 1
    alone, traced = [], []
    for _ in range(rounds):
        alone.append(_run_workers(ncpu, seconds, None))
        traced.append(_run_workers(ncpu, seconds, start))
    a_cpu, t_cpu = median([r.per_cpu_s for r in alone]), median([r.per_cpu_s for r in traced])
    a_wall, t_wall = (median([r.per_wall_s for r in alone]),
                      median([r.per_wall_s for r in traced]))
    return {"workers": ncpu, "rounds": rounds, "seconds": seconds,
            "alone_loops_per_cpu_s": a_cpu, "traced_loops_per_cpu_s": t_cpu,
            "slowdown_cpu_pct": 100 * (a_cpu - t_cpu) / a_cpu,
            "slowdown_wall_pct": 100 * (a_wall - t_wall) / a_wall,
            "own_cpu_pct_of_one_cpu": median([r.own_cpu_pct for r in traced])}


def row(name: str, hz: int, r: dict) -> list[str]:
    return [name, f"{hz} Hz", f"{r['alone_loops_per_cpu_s']:,.0f}",
            f"{r['traced_loops_per_cpu_s']:,.0f}", f"{r['slowdown_cpu_pct']:+.2f}%",
            f"{r['slowdown_wall_pct']:+.2f}%", f"{r['own_cpu_pct_of_one_cpu']:.2f}%"]


HEADERS = ["profiler", "rate", "alone (loops/CPU-s)", "profiled", "slowdown per CPU-s",
           "slowdown per wall-s", "profiler's own CPU (% of one CPU)"]


# --- the profilers, started and sampling when these return -----------------------------

def pytracekit(*args: str) -> Starter:
    """`pytracekit profile ARGS` (stdout discarded); `{pids}` in ARGS becomes the workers'
    pids. Returns once it signals PYTRACEKIT_READY_FD (attached, sampling)."""
    def start(pids: list[int], scratch: str) -> list[subprocess.Popen]:
        argv = [a.replace("{pids}", ",".join(map(str, pids))) for a in args]
        ready_r, ready_w = os.pipe()
        proc = subprocess.Popen([PY, "-m", "pytracekit", "profile", *argv], cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTRACEKIT_READY_FD": str(ready_w)},
                                pass_fds=(ready_w,))
        os.close(ready_w)
        os.read(ready_r, 16)
        os.close(ready_r)
        return [proc]
    return start


def perf_dwarf_all_cpus(hz: int) -> Starter:
    """`perf record -a --call-graph dwarf` (perf does not say when it is sampling: a
    second's grace)."""
    def start(pids: list[int], scratch: str) -> list[subprocess.Popen]:
        proc = subprocess.Popen(["perf", "record", "-q", "-a", "-e", "cpu-clock", "-F", str(hz),
                                 "--call-graph", "dwarf", "-o", f"{scratch}/perf.data"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        return [proc]
    return start


def bcc_profile_all_cpus(hz: int) -> Starter:
    """BCC's `profile-bpfcc -F HZ -f` on every CPU (frame pointers; it counts stacks in
    the kernel and names them at the end: its cost while sampling is the kernel's).
    Sampling once it holds its perf events open."""
    def start(pids: list[int], scratch: str) -> list[subprocess.Popen]:
        from bench.common import bcc_kernel_tree
        tree = bcc_kernel_tree()
        shutil.move(str(tree.parent), f"{scratch}/bcc")   # removed with the scratch dir
        proc = subprocess.Popen(["profile-bpfcc", "-F", str(hz), "-f"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "BCC_KERNEL_SOURCE": f"{scratch}/bcc/kernel"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and \
                not perf_event_fds(proc.pid):
            time.sleep(0.05)
        time.sleep(0.3)   # its other CPUs' events
        return [proc]
    return start



def pyspy(hz: int, pyspy_path: str) -> Starter:
    """One `py-spy record -r HZ -p PID` per worker (py-spy records one process)."""
    def start(pids: list[int], scratch: str) -> list[subprocess.Popen]:
        procs = [subprocess.Popen([pyspy_path, "record", "-r", str(hz), "-f", "raw",
                                   "-o", f"{scratch}/{pid}.txt", "-p", str(pid)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for pid in pids]
        time.sleep(1.0)
        return procs
    return start


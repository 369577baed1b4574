"""profile: sampling overhead on a CPU-bound load, and symbolization time
next to BCC's profile-bpfcc.

1. Overhead: one CPU-bound process per CPU counts loop iterations for a few
   seconds, alone and while `pytracekit profile -F 99` samples every CPU;
   the work rate is compared (median of alternating rounds).
2. Symbolization: a python3 program with many distinct stacks (json, re,
   sort) is profiled at 999 Hz; the time to read and symbolize every stack
   is measured cold (first read) and warm, and both tools' whole runs are
   timed. BCC needs BCC_KERNEL_SOURCE: it gets pytracekit's generated tree
   plus the three definitions profile.py also needs (bpf_perf_event.h,
   TASK_COMM_LEN, PAGE_OFFSET), in a temporary copy (common.bcc_kernel_tree).
3. Own CPU under process churn (issue 12): `profile -F 99 -f` system-wide while a
   churn generator starts CHURN_RATE short processes a second (true, sh, ls,
   env, sleep, python3); its /proc/PID/stat user+system CPU in the first
   FIRST_S after it is ready and in the LATER_S after those, medians of rounds.
   Every new process is snapshot, its modules' unwind tables loaded and it is
   checked for Python; new Python stacks are read while they live.
4. End of run (issue 17): `profile -F 999 -f -p PID` and `profile-bpfcc -F 999 -f -p
   PID` each sample the busy python3 for 3 s of its CPU (bench/samplers.py: it is
   stopped until the tool samples), then get SIGINT; the time from SIGINT to exit is
   reading, naming and printing the profile. Rounds alternate the two tools; medians.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.common import PY, ROOT, bcc_kernel_tree, cpu_seconds, median, pick, table
from bench.samplers import (BccProfile, Pytracekit, Result, communicate_then_rusage,
                            folded_stacks, side_by_side)

ROUNDS = 5
WORK_S = 3.0
COUNTER = ("import time\nend = time.monotonic() + {s}\nn = 0\n"
           "while time.monotonic() < end:\n    n += 1\nprint(n)\n")
BUSY = """
import json, re, sys, time
end = time.time() + float(sys.argv[1])
data = [{"k": i, "v": str(i) * 5} for i in range(200)]
pat = re.compile(r"(\\d+)-(\\w+)")
while time.time() < end:
    json.loads(json.dumps(data))
    pat.findall("123-abc 456-def " * 20)
    sorted(data, key=lambda d: -d["k"])
"""


def _work_rate(ncpu: int) -> float:
    """Loops per CPU-second of the workers themselves: sampling costs land in
    their system time, while other load on a shared machine (which steals
    wall time) does not distort the rate."""
    procs = [subprocess.Popen([sys.executable, "-c", COUNTER.format(s=WORK_S)],
                              stdout=subprocess.PIPE, text=True) for _ in range(ncpu)]
    loops = cpu = 0.0
    for p in procs:
        _, _, usage = os.wait4(p.pid, 0)
        p.returncode = 0
        loops += int(p.stdout.read())
        cpu += usage.ru_utime + usage.ru_stime
    return loops / cpu


def _start_profiler(args: list[str]) -> subprocess.Popen:
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen([PY, "-m", "pytracekit", "profile", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTRACEKIT_READY_FD": str(ready_w)},
                            pass_fds=(ready_w,))
    os.close(ready_w)
    os.read(ready_r, 16)
    os.close(ready_r)
    return proc


def overhead() -> list[str]:
    ncpu = os.cpu_count() or 1
    base, traced, own = [], [], []
    for _ in range(ROUNDS):
        base.append(_work_rate(ncpu))
        prof = _start_profiler(["-F", "99"])
        before, t0 = cpu_seconds(prof.pid), time.monotonic()
        traced.append(_work_rate(ncpu))
        own.append(100 * (cpu_seconds(prof.pid) - before) / (time.monotonic() - t0))
        prof.send_signal(signal.SIGINT)
        prof.wait(timeout=60)
    b, t = median(base), median(traced)
    return [f"profile -F 99, all {ncpu} CPUs busy", f"{b:,.0f} loops/CPU-s",
            f"{t:,.0f} loops/CPU-s", f"{100 * (t - b) / b:+.2f}%",
            f"{median(own):.2f}% of one CPU"]


STEADY_FROM_S, STEADY_TO_S = 3.0, 13.0


def _threads_cpu_s(pid: int) -> float:
    """CPU of a process's live threads so far, in ns precision (schedstat):
    clock ticks (cpu_seconds) are 10 ms, the whole of a steady window's use."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass   # a thread that ended meanwhile
    return total / 1e9


def own_cpu_steady(rounds: int) -> list[str]:
    """`profile -F 99` system-wide with one busy python3 per CPU started after
    ready: its own CPU (% of one CPU) in the first STEADY_FROM_S (the new
    processes' start-up work: their binaries, Python runtimes and code objects,
    and the kernel's symbols read in the background) and from then to
    STEADY_TO_S (the rate it runs at), medians of `rounds`."""
    ncpu = os.cpu_count() or 1
    firsts, steadies = [], []
    for _ in range(rounds):
        prof = _start_profiler(["-F", "99"])
        c0, t0 = cpu_seconds(prof.pid), time.monotonic()
        busy = [_busy_python(STEADY_TO_S + 5) for _ in range(ncpu)]
        try:
            time.sleep(STEADY_FROM_S)
            c1, t1 = cpu_seconds(prof.pid), time.monotonic()
            s1 = _threads_cpu_s(prof.pid)
            time.sleep(STEADY_TO_S - STEADY_FROM_S)
            s2, t2 = _threads_cpu_s(prof.pid), time.monotonic()
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=60)
        finally:
            for b in busy:
                _end(b)
        firsts.append(100 * (c1 - c0) / (t1 - t0))
        steadies.append(100 * (s2 - s1) / (t2 - t1))
    return [f"profile -F 99, all {ncpu} CPUs busy (python3 started after ready)",
            f"{median(firsts):.2f}% of one CPU (of {', '.join(f'{x:.2f}' for x in firsts)})",
            f"{median(steadies):.2f}% (of {', '.join(f'{x:.2f}' for x in steadies)})"]


CHURN_RATE = 25          # new processes a second (session 7 saw 14-36 from test runs)
FIRST_S, LATER_S = 10.0, 20.0
CHURN = """import subprocess, sys, time
cmds = [["true"], ["sh", "-c", "echo x >/dev/null"], ["ls", "/"], ["env", "true"],
        ["sleep", "0.2"], [sys.argv[3], "-c", "import json; json.dumps([1] * 100)"]]
rate, end, i, live = float(sys.argv[1]), time.monotonic() + float(sys.argv[2]), 0, []
due = time.monotonic()
while time.monotonic() < end:
    live = [p for p in live if p.poll() is None]
    live.append(subprocess.Popen(cmds[i % len(cmds)], stdout=subprocess.DEVNULL))
    i += 1
    due += 1 / rate
    time.sleep(max(0.0, due - time.monotonic()))
for p in live:
    p.wait()
print(i)
"""


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def own_cpu_under_churn(rounds: int, first_s: float = FIRST_S,
                        later_s: float = LATER_S) -> list[str]:
    """`profile -F 99 -f` system-wide under CHURN_RATE new processes a second:
    its own CPU (% of one CPU) in the first `first_s` after ready and in the
    `later_s` after those, medians of `rounds`."""
    firsts, laters, loads = [], [], []
    for _ in range(rounds):
        churn = subprocess.Popen([sys.executable, "-c", CHURN, str(CHURN_RATE),
                                  str(first_s + later_s + 60), "/usr/bin/python3"],
                                 stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            prof = _start_profiler(["-F", "99", "-f"])
            c0, t0 = cpu_seconds(prof.pid), time.monotonic()
            time.sleep(first_s)
            c1, t1 = cpu_seconds(prof.pid), time.monotonic()
            time.sleep(later_s)
            c2, t2 = cpu_seconds(prof.pid), time.monotonic()
            loads.append(_loadavg())
            prof.send_signal(signal.SIGINT)
            prof.wait(timeout=120)
        finally:
            churn.kill()
            churn.wait()
        firsts.append(100 * (c1 - c0) / (t1 - t0))
        laters.append(100 * (c2 - c1) / (t2 - t1))
    return [f"profile -F 99 -f, all CPUs, {CHURN_RATE} new processes/s",
            f"{median(firsts):.2f}% of one CPU (of {', '.join(f'{x:.1f}' for x in firsts)})",
            f"{median(laters):.2f}% (of {', '.join(f'{x:.1f}' for x in laters)})",
            f"load average {min(loads):.1f}-{max(loads):.1f}"]


def _busy_python(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", BUSY, str(seconds)])


def _end(busy: subprocess.Popen) -> None:
    """The busy loop outlives the profiler's start-up (seconds on a loaded machine, with
    the CFI tables to verify): ended here once the run is over."""
    busy.kill()
    busy.wait()


def _timed_run(argv: list[str], env: dict | None = None) -> tuple[float, str, str, int]:
    start = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, **(env or {})}, timeout=120)
    return time.perf_counter() - start, res.stdout, res.stderr, res.returncode


def _unknown_share(folded: str) -> str:
    """Share of frames, weighted by samples, left unnamed: BCC's `[unknown]`,
    pytracekit's `MODULE+0xOFFSET` (samplers.UNNAMED)."""
    share = Result(stacks=folded_stacks(folded, drop_first=True)).unnamed_share()
    return "n/a" if share != share else f"{100 * share:.1f}%"


def symbolization() -> list[list[str]]:
    from pytracekit.engine import settings  # noqa: F401  (imports the package from ROOT)
    from pytracekit.engine.runner import run_until_done
    from pytracekit.tools import profile
    rows = []
    busy = _busy_python(600)
    try:
        time.sleep(0.3)
        session = profile.start(pids=[busy.pid], frequency=999)
        try:
            run_until_done(session.target, duration=3)
            kernel_stacks = len(session.prog["counts"])
            t0 = time.perf_counter()
            cold = session.read()
            t1 = time.perf_counter()
            session.read()
            t2 = time.perf_counter()
        finally:
            session.close()
    finally:
        _end(busy)
    frames = sum(len(s.stack) for s in cold.samples)
    rows.append(["pytracekit: read + symbolize (cold)", f"{kernel_stacks} stacks in the "
                 f"map -> {len(cold.samples)} by name, {frames} frames",
                 f"{(t1 - t0) * 1000:.0f} ms",
                 f"{cold.loss.unknown_frames} unknown frames"])
    rows.append(["pytracekit: read + symbolize (warm)", "same", f"{(t2 - t1) * 1000:.0f} ms", ""])

    busy = _busy_python(600)
    try:
        time.sleep(0.3)
        wall, out, err, rc = _timed_run([PY, "-m", "pytracekit", "profile", "-F", "999", "-f",
                                         "-p", str(busy.pid), "3"])
    finally:
        _end(busy)
    rows.append(["pytracekit profile -F 999 -f -p PID 3 (whole run)",
                 f"{len(out.splitlines())} folded lines", f"{wall - 3:.2f} s beyond the 3 s",
                 f"rc={rc}, unknown frames {_unknown_share(out)}"])

    bcc = shutil.which("profile-bpfcc")
    if not bcc:
        rows.append(["BCC profile-bpfcc", "not installed (apt-get install bpfcc-tools)", "", ""])
        return rows
    tree = bcc_kernel_tree()
    busy = _busy_python(600)
    try:
        time.sleep(0.3)
        wall, out, err, rc = _timed_run([bcc, "-F", "999", "-f", "-p", str(busy.pid), "3"],
                                        env={"BCC_KERNEL_SOURCE": str(tree)})
    finally:
        _end(busy)
        shutil.rmtree(tree.parent, ignore_errors=True)
    if rc != 0:
        rows.append(["BCC profile-bpfcc -F 999 -f -p PID 3", "failed",
                     (err.strip().splitlines() or ["?"])[0][:80], f"rc={rc}"])
    else:
        rows.append(["BCC profile-bpfcc -F 999 -f -p PID 3 (whole run)",
                     f"{len(out.splitlines())} folded lines", f"{wall - 3:.2f} s beyond the 3 s",
                     f"unknown frames {_unknown_share(out)}"])
    return rows


class PytracekitFolded(Pytracekit):
    """`pytracekit profile -f` (user and kernel stacks, Python frames: the defaults)."""
    argv_head = [PY, "-m", "pytracekit", "profile", "-f"]

    def finish(self) -> Result:
        out, _, res = communicate_then_rusage(self)
        res.stacks = folded_stacks(out, drop_first=True)
        return res


def end_of_run(rounds: int, cpu_s: float, hz: int = 999) -> list[list[str]]:
    """SIGINT to exit of each tool after `cpu_s` of the busy loop's CPU at `hz`."""
    times: dict[str, list[Result]] = {}
    for _ in range(rounds):
        for sampler in (PytracekitFolded(), BccProfile("-f")):
            busy = _busy_python(600)
            try:
                time.sleep(0.3)
                res = side_by_side([sampler], [busy.pid], hz, cpu_s)[sampler.name]
            finally:
                _end(busy)
            times.setdefault(sampler.name, []).append(res)
    rows = []
    for name, results in times.items():
        failed = [r.error for r in results if r.error]
        if failed:
            rows.append([name, "failed", failed[0][:80], ""])
            continue
        rows.append([f"{name} -F {hz} -f -p PID: SIGINT to exit",
                     f"{median([r.samples for r in results]):,.0f} samples",
                     f"{median([r.after_stop_s for r in results]):.2f} s "
                     f"(of {', '.join(f'{r.after_stop_s:.2f}' for r in results)})",
                     f"peak RSS {median([r.peak_rss_kib for r in results]) / 1024:.0f} MiB"])
    return rows


def main() -> None:
    if os.geteuid() != 0:
        print("needs root")
        return
    print(table(["overhead", "alone", "while profiling", "work rate change",
                 "pytracekit's own CPU"], [overhead()]))
    print()
    print(table(["own CPU", f"first {STEADY_FROM_S:g} s after ready",
                 f"{STEADY_FROM_S:g}-{STEADY_TO_S:g} s (steady)"], [own_cpu_steady(pick(5, 1))]))
    print()
    print(table(["own CPU under process churn", f"first {FIRST_S:g} s after ready",
                 f"next {LATER_S:g} s", "machine"],
                [own_cpu_under_churn(pick(7, 1), *pick((FIRST_S, LATER_S), (3.0, 3.0)))]))
    print()
    print(table(["symbolization (python3 busy loop, 999 Hz, 3 s)", "size", "time", "notes"],
                symbolization()))
    print()
    print(table(["end of run (python3 busy loop, 999 Hz, 3 s of its CPU)", "size",
                 "SIGINT to exit (median)", "notes"], end_of_run(pick(5, 2), 3.0)))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

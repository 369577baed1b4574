"""Launch-to-attached time and peak RSS of a one-tracepoint tool, side by side:
pytracekit (per-program BTF header, compiled: the program cache off), the same
program through BCC with the whole BTF dump, bpftrace, and libbpf-tools'
syscount (the same job in C), in alternation, with the cold funccount's ratio
to BCC. Then where a funccount's start-up goes, compiled and cached
(PYTRACEKIT_STARTUP_TIMES, pytracekit/engine/startup.py), and compiled against
loaded from the program cache (pytracekit/engine/progcache.py) for funccount,
trace and profile of a Python process with and without its Python frames, and where
that cached profile's start-up goes."""
from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import time

from bench.common import PY, ROOT, median, pick, table, time_until_ready

RUNS = 7
FUNCCOUNT = [PY, "-m", "pytracekit", "funccount", "t:raw_syscalls:sys_enter"]
EXAMPLE = str(ROOT / "examples" / "count_syscalls.py")
COMPILED = {"PYTRACEKIT_NO_PROGRAM_CACHE": "1"}
CACHED = {"PYTRACEKIT_NO_PROGRAM_CACHE": ""}
# .pyc files as an installed pytracekit would have them (see bench_python.PYC)
PYC = {"PYTHONDONTWRITEBYTECODE": ""}


def contenders() -> list[tuple[str, list[str], object]]:
    found = [
        ("pytracekit (examples/count_syscalls.py)", [PY, EXAMPLE], None),
        ("pytracekit funccount t:raw_syscalls:sys_enter", FUNCCOUNT, None),
        ("BCC, same program, whole BTF dump", [PY, str(ROOT / "bench" / "full_dump_bcc.py"),
                                               EXAMPLE], None),
    ]
    if shutil.which("bpftrace"):
        # bpftrace prints this line once its probes are attached.
        found.append(("bpftrace 'tracepoint:raw_syscalls:sys_enter { @[pid, comm] = count(); }'",
                      ["bpftrace", "-e",
                       "tracepoint:raw_syscalls:sys_enter { @[pid, comm] = count(); }"],
                      lambda line: line.startswith("Attaching")))
    if shutil.which("/usr/sbin/syscount"):
        found.append(("libbpf-tools syscount -P (C, CO-RE)", ["stdbuf", "-oL", "/usr/sbin/syscount", "-P"],
                      lambda line: line.startswith("Tracing syscalls")))
    return found


def main() -> None:
    # Build caches first: a cold first start is not what is compared.
    subprocess.run([PY, str(ROOT / "bench" / "full_dump_bcc.py"), "--prepare"], check=True)
    print(f"load average before: {_load()}\n")
    found = contenders()
    times: dict[str, list[float]] = {name: [] for name, _, _ in found}
    peaks: dict[str, list[int]] = {name: [] for name, _, _ in found}
    for i in range(RUNS + 1):   # in alternation; round 0 warms up (page cache, header cache)
        for name, argv, ready in found:
            env = {**PYC, **COMPILED} if name.startswith("pytracekit") else PYC
            elapsed, peak = time_until_ready(argv, ready, env=env)
            if i:
                times[name].append(elapsed)
                peaks[name].append(peak)
    rows = [[name, f"{median(times[name]):.3f}", f"{min(times[name]):.3f}",
             f"{max(times[name]):.3f}", f"{max(peaks[name]) / 1024:.0f}"] for name, _, _ in found]
    print(table(["tool", "median launch-to-attached (s)", "min", "max", "peak RSS (MiB)"], rows))
    baseline = median(times[found[2][0]])
    for name, _, _ in found[:2]:
        print(f"\n{name}: {median(times[name]) / baseline:.2f} of BCC's time with the whole "
              f"BTF dump ({baseline / median(times[name]):.1f}x faster; issue 14 asks <= 0.40)")
    print(f"({RUNS} runs each in alternation, medians; load average after: {_load()})\n")
    breakdown()
    print()
    cached_rows()
    print()
    profile_breakdown()


def _load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def profile_breakdown() -> None:
    """Median milliseconds of each start-up step of a cached profile of a python3
    process, without and with its Python frames, in alternation."""
    runs = pick(RUNS, 2)
    target = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests" / "python_target.py"),
                               "loop", "3600"], stdin=subprocess.DEVNULL)
    time.sleep(0.3)
    modes = (("--no-python", ["--no-python"]), ("Python frames", []))
    steps: dict[str, dict[str, list[float]]] = {mode: {} for mode, _ in modes}
    try:
        for i in range(runs + 1):   # round 0 writes the cache entries and is not counted
            for mode, extra in modes:
                argv = [PY, "-m", "pytracekit", "profile", *extra, "-p", str(target.pid)]
                for step, ms in startup_steps(argv, {**CACHED, **PYC}) if i else ():
                    # "profile: loaded from the program cache": one row per step
                    steps[mode].setdefault(step.removeprefix("profile: "), []).append(ms)
    finally:
        target.kill()
        target.wait()
    names = list(dict.fromkeys([*steps["--no-python"], *steps["Python frames"]]))
    rows = [[name] + [f"{median(steps[m][name]):.1f}" if name in steps[m] else ""
                      for m, _ in modes] for name in names]
    rows.append(["sum of the medians"] + [f"{sum(median(v) for v in steps[m].values()):.1f}"
                                          for m, _ in modes])
    print(table(["cached `profile -p PID` (python3) start-up step", "--no-python (ms)",
                 "Python frames (ms)"], rows))
    print(f"({runs} runs each in alternation, medians; load average after: {_load()})")


def breakdown() -> None:
    """Median milliseconds of each start-up step of a funccount, compiled and cached,
    in alternation. "interpreter" is from launch until pytracekit's __main__ runs."""
    runs = pick(RUNS, 2)
    modes = (("compiled", COMPILED), ("cached", CACHED))
    steps: dict[str, dict[str, list[float]]] = {mode: {} for mode, _ in modes}
    for i in range(runs + 1):   # round 0 writes the cache entry and is not counted
        for mode, env in modes:
            found = startup_steps(FUNCCOUNT, {**env, **PYC})
            for step, ms in found if i else ():
                steps[mode].setdefault(step, []).append(ms)
    names = sorted(dict.fromkeys([*steps["compiled"], *steps["cached"]]), key=lambda n: n == "attached")
    rows = [[name] + [f"{median(steps[m][name]):.1f}" if name in steps[m] else ""
                      for m, _ in modes] for name in names]
    rows.append(["sum of the medians"] + [f"{sum(median(v) for v in steps[m].values()):.1f}"
                             for m, _ in modes])
    print(table(["funccount start-up step", "compiled (ms)", "cached (ms)"], rows))
    print(f"({runs} runs each in alternation, medians; load average after: {_load()})")


_STEP = re.compile(r"^pytracekit: start-up: (.*) \+[\d.]+ ms \(at ([\d.]+)\)$", re.M)


def startup_steps(argv: list[str], env: dict) -> list[tuple[str, float]]:
    """One run with PYTRACEKIT_STARTUP_TIMES=1: each step and its milliseconds, the
    first ("interpreter") measured from before the launch on the same clock."""
    rfd, wfd = os.pipe()
    full_env = {**os.environ, **env, "PYTRACEKIT_STARTUP_TIMES": "1",
                "PYTRACEKIT_READY_FD": str(wfd)}
    start = time.perf_counter()    # CLOCK_MONOTONIC, as the marks
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=full_env, pass_fds=(wfd,), cwd=ROOT, text=True)
    os.close(wfd)
    try:
        select.select([rfd], [], [], 60)
    finally:
        os.close(rfd)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    marks = [(step, float(at)) for step, at in _STEP.findall(err)]
    out, previous = [], start
    for step, at in marks:
        out.append(("interpreter (launch to pytracekit's __main__)" if not out else step,
                    1000 * (at - previous)))
        previous = at
    return out


def cached_rows() -> None:
    """Each command compiled (cache off) and from the program cache, interleaved."""
    runs = pick(RUNS, 2)
    target = subprocess.Popen(["/usr/bin/python3", str(ROOT / "tests" / "python_target.py"),
                               "loop", "3600"], stdin=subprocess.DEVNULL)
    time.sleep(0.3)
    commands = [
        ("funccount t:raw_syscalls:sys_enter", ["funccount", "t:raw_syscalls:sys_enter"]),
        ("trace t:syscalls:sys_enter_openat", ["trace", "t:syscalls:sys_enter_openat"]),
        ("profile --no-python -p PID (python3)", ["profile", "--no-python", "-p", str(target.pid)]),
        ("profile -p PID (python3, Python frames)", ["profile", "-p", str(target.pid)]),
    ]
    times = {(name, mode): [] for name, _ in commands for mode in ("compiled", "cached")}
    try:
        for i in range(runs + 1):    # round 0 writes the cache entries and is not counted
            for name, args in commands:
                for mode, env in (("compiled", COMPILED), ("cached", CACHED)):
                    elapsed, _peak = time_until_ready([PY, "-m", "pytracekit", *args], None,
                                                      env={**env, **PYC})
                    if i:
                        times[(name, mode)].append(elapsed)
    finally:
        target.kill()
        target.wait()
    rows = [[f"pytracekit {name}", f"{median(times[(name, 'compiled')]):.3f}",
             f"{median(times[(name, 'cached')]):.3f}",
             f"{min(times[(name, 'cached')]):.3f}-{max(times[(name, 'cached')]):.3f}"]
            for name, _ in commands]
    print(table(["launch to attached", "compiled, median (s)", "from the program cache (s)",
                 "cached min-max"], rows))

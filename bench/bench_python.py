"""Issue 13's numbers: Python frames, with py-spy (PyPI, installed by `make bench` into
build/bench-venv, never a runtime dependency) as the reference in the same run.

1. outer -> inner: tests/python_target.py's pure-Python loop on every installed
   interpreter (Debian's /usr/bin/python3.11, pyenv's newest 3.8-3.13 under
   `$(pyenv root)/versions`); `pytracekit profile` and `py-spy record` sample the same
   execution (bench/samplers.py); the share of samples whose Python frames are exactly
   <module> -> outer -> inner.
2. Overhead at 99 and 999 Hz on a CPU-bound Python program (one per CPU,
   bench/cost.py): `pytracekit profile -p PIDS -F HZ` against one `py-spy record -r HZ
   -p PID` per process; the slowdown and each profiler's own CPU.
3. Launch to attached on a Python process: `pytracekit profile -p PID` (Python
   frames, the default) against `--no-python`, alternating runs, medians.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import cost
from bench.common import PY, ROOT, median, pick, table, tests_module, time_until_ready, \
    write_json
from bench.samplers import PYSPY, PySpy, Pytracekit, side_by_side

TARGET = ROOT / "tests" / "python_target.py"
DEBIAN_PYTHON = "/usr/bin/python3.11"
OUTER_INNER = ["<module>", "outer", "inner"]
# launches use (and the warm-up writes) .pyc files as an installed pytracekit would, also
# where the environment says PYTHONDONTWRITEBYTECODE (here: every launch compiled every
# module's source, ~0.3 s, more with Python frames' modules)
PYC = {"PYTHONDONTWRITEBYTECODE": ""}


def interpreters() -> list[tuple[str, str | None]]:
    """(label, executable or None when not installed), as the tests find them."""
    pythons = tests_module("pythons")
    found = [("Debian 3.11", DEBIAN_PYTHON if os.path.exists(DEBIAN_PYTHON) else None)]
    for minor in range(8, 14):
        inst = pythons.pyenv_install(minor)   # (ROOT/versions/3.X.Y/bin/python3.X, lib)
        version = os.path.basename(os.path.dirname(os.path.dirname(inst[0]))) if inst else ""
        found.append((f"pyenv {version or f'3.{minor}'}", inst[0] if inst else None))
    return found


def _function(frame: str) -> str:
    """'Thread.run (threading.py:975)' -> 'run' (3.8-3.10 names have no class)."""
    return frame.split(" (", 1)[0].rsplit(".", 1)[-1]


def _outer_inner(stack: tuple[str, ...]) -> bool:
    return [_function(f) for f in stack] == OUTER_INNER


def outer_inner(hz: int, cpu_s: float) -> tuple[list[list[str]], dict]:
    rows, data = [], {}
    for label, exe in interpreters():
        if exe is None:
            rows.append([label, "not installed", "", ""])
            continue
        proc = subprocess.Popen([exe, str(TARGET), "loop", "3600"], stdin=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            results = side_by_side([Pytracekit(kind="python"), PySpy()], [proc.pid], hz, cpu_s)
        finally:
            proc.kill()
            proc.wait()
        data[label] = {}
        cells = []
        for tool, r in results.items():
            share = r.share(_outer_inner)
            data[label][tool] = {"samples": r.samples, "outer_inner": share, "error": r.error,
                                 "loss": r.loss,
                                 "stacks": {";".join(s): c for s, c in r.stacks.most_common(5)}}
            cells += [r.error] if r.error else [f"{_pct(share)} of {r.samples}"]
        rows.append([label, exe, *cells])
    return rows, data


def overhead(rates: list[int], rounds: int, seconds: float) -> tuple[list[list[str]], dict]:
    rows, data = [], {}
    for hz in rates:
        contenders = [(f"pytracekit profile -p PIDS -F {hz}",
                       cost.pytracekit("-F", str(hz), "-p", "{pids}"))]
        if PYSPY.exists():
            contenders.append((f"py-spy record -r {hz} (one per process)",
                               cost.pyspy(hz, str(PYSPY))))
        else:
            rows.append([f"py-spy record -r {hz}", f"{hz} Hz", "not installed (make bench)",
                         "", "", "", ""])
        for name, start in contenders:
            r = cost.compare(start, rounds, seconds)
            data[name] = r
            rows.append(cost.row(name, hz, r))
    return rows, data


def launch_to_attached(runs: int) -> tuple[list[list[str]], dict]:
    target = subprocess.Popen([DEBIAN_PYTHON, str(TARGET), "loop", "3600"],
                              stdin=subprocess.DEVNULL)
    variants = {"pytracekit profile -p PID (Python frames)": [],
                "pytracekit profile --no-python -p PID": []}
    peaks = {name: [] for name in variants}
    try:
        time.sleep(0.3)
        for i in range(runs + 1):   # the first round warms caches and is not counted
            for name in variants:
                extra = ["--no-python"] if "no-python" in name else []
                elapsed, peak = time_until_ready([PY, "-m", "pytracekit", "profile", *extra,
                                                  "-p", str(target.pid)], None, env=PYC)
                if i:
                    variants[name].append(elapsed)
                    peaks[name].append(peak)
    finally:
        target.kill()
        target.wait()
    rows, data = [], {}
    for name, times in variants.items():
        data[name] = {"median_s": median(times), "runs": times, "peak_rss_kib": max(peaks[name])}
        rows.append([name, f"{median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}",
                     f"{max(peaks[name]) / 1024:.0f}"])
    names = list(variants)
    extra = data[names[0]]["median_s"] - data[names[1]]["median_s"]
    rows.append(["Python frames cost at start-up", f"{extra:+.3f}", "", "", ""])
    data["python_extra_s"] = extra
    return rows, data


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def main() -> None:
    if os.geteuid() != 0:
        print("needs root")
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    hz, cpu_s = 99, pick(5, 1)
    rows, oi = outer_inner(hz, cpu_s)
    print(table([f"outer -> inner ({hz} Hz, {cpu_s} s of its CPU)", "interpreter",
                 "pytracekit profile", "py-spy record"], rows))
    print()
    rows, over = overhead([99, 999], pick(5, 1), pick(3.0, 1.0))
    print(table(cost.HEADERS, rows))
    print()
    rows, launch = launch_to_attached(pick(5, 2))
    print(table(["launch to attached, Debian python3.11 loop", "median (s)", "min", "max",
                 "peak RSS (MiB)"], rows))
    write_json("python", {"started": started, "outer_inner": oi, "overhead": over,
                          "launch_to_attached": launch})


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

"""Issue 12's numbers: whole native stacks without frame pointers, side by side with
perf record --call-graph dwarf (the reference) and BCC's profile-bpfcc in one run.

1. Reach: the share of samples whose user stack reaches the program's start
   (`_start`, `__libc_start_main`, `__libc_start_call_main`), for Debian's `xz -9 -T1` on
   a large input and `/usr/bin/python3.11` running a busy loop; all three samplers attach
   to the same process for the same execution (bench/samplers.py). Also the share of frames left unnamed.
2. Exact stacks: the test workload built -O2 -fomit-frame-pointer
   -fno-optimize-sibling-calls (tests/conftest.py's build) spinning in spin_outer ->
   spin_inner: the share of samples whose stack is exactly _start -> ... -> main ->
   spin_outer -> spin_inner (what is below spin_inner: its clock read), and each tool's
   biggest folded stacks.
3. Cost on all CPUs at 99 and 999 Hz: one CPU-bound python3 per CPU, alone and under
   `pytracekit profile -F HZ` / `perf record -a --call-graph dwarf -F HZ` / BCC's
   `profile-bpfcc -F HZ -f` (bench/cost.py); the machine's load is printed with it.
4. Naming 10,000 samples: two busy python3 processes at 999 Hz until about 10,000
   samples; pytracekit's read + naming cold and warm and its peak RSS
   (bench/profile_reader.py), BCC's whole run beyond the duration and peak RSS, perf
   report's time and peak RSS on perf's recording of the same execution.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import cost
from bench.bench_profile import BUSY
from bench.common import PY, ROOT, pick, table, tests_module, wait_measured, write_json
from bench.samplers import (BccProfile, PerfDwarf, Pytracekit, Result, Sampler,
                            communicate_then_rusage, reaches_start, side_by_side)

DEBIAN_PYTHON = "/usr/bin/python3.11"
XZ = "/usr/bin/xz"
SPIN_PATH = ("_start", "__libc_start_main", "__libc_start_call_main", "main", "spin_outer",
             "spin_inner")


def _samplers() -> list[Sampler]:
    return [Pytracekit(), PerfDwarf(), BccProfile()]


def _words(path: Path, megabytes: int) -> Path:
    """Text of random words (xz -9 compresses ~0.6 MB/s of it here): kept in build/."""
    if path.exists() and path.stat().st_size >= megabytes << 20:
        return path
    rng = random.Random(12)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
                  for _ in range(5000)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        while f.tell() < megabytes << 20:
            f.write(" ".join(rng.choices(vocabulary, k=100000)) + "\n")
    return path


def _sampled(argv: list[str], hz: int, cpu_s: float) -> dict[str, Result]:
    """Every sampler on one process of `argv` (killed afterwards) while it uses cpu_s."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        return side_by_side(_samplers(), [proc.pid], hz, cpu_s)
    finally:
        proc.kill()
        proc.wait()


def reach(hz: int, cpu_s: float) -> tuple[list[list[str]], dict]:
    rows, data = [], {}
    words = _words(ROOT / "build" / "bench" / "words-16M.txt", 16)
    workloads = [("xz -9 -T1 (Debian, liblzma)", [XZ, "-9", "-T1", "-c", str(words)]),
                 ("python3.11 busy loop (Debian)", [DEBIAN_PYTHON, "-c", BUSY, "3600"])]
    for label, argv in workloads:
        if not os.path.exists(argv[0]):
            rows.append([label, f"{argv[0]} is not installed", "", "", ""])
            continue
        results = _sampled(argv, hz, cpu_s)
        data[label] = {}
        for tool, r in results.items():
            data[label][tool] = {"samples": r.samples, "error": r.error, "loss": r.loss,
                                 "reach_start": r.share(reaches_start),
                                 "unnamed_frames": r.unnamed_share()}
            rows.append([label, tool, str(r.samples), _pct(r.share(reaches_start)),
                         _pct(r.unnamed_share())] if not r.error else
                        [label, tool, "", r.error, ""])
    return rows, data


def exact_stacks(hz: int, cpu_s: float) -> tuple[list[list[str]], list[list[str]], dict]:
    conftest = tests_module("conftest")
    binary = conftest._build_nofp(conftest.WORKLOAD.parent / "workload-nofp")
    results = _sampled([binary, "spin", "3600"], hz, cpu_s)
    rows, tops, data = [], [], {}
    for tool, r in results.items():
        if r.error:
            rows.append([tool, "", r.error, ""])
            continue
        exact = r.share(lambda s: s[:len(SPIN_PATH)] == SPIN_PATH)
        rows.append([tool, str(r.samples), _pct(exact), _pct(r.share(reaches_start))])
        top = r.stacks.most_common(3)
        tops += [[tool, f"`{';'.join(s)}`", str(c)] for s, c in top]
        data[tool] = {"samples": r.samples, "exact": exact, "loss": r.loss,
                      "stacks": {";".join(s): c for s, c in r.stacks.most_common()}}
    return rows, tops, data


def cost_all_cpus(rates: list[int], rounds: int, seconds: float) -> tuple[list[list[str]], dict]:
    # a first system-wide run builds every running binary's unwind tables (cached by
    # build id); that one-time cost is not what is compared
    warm = cost.pytracekit("-F", "99")([], tempfile.gettempdir())[0]
    time.sleep(pick(5, 1))
    cost.stop(warm)
    rows, data = [], {}
    for hz in rates:
        for name, start in ((f"pytracekit profile -F {hz}", cost.pytracekit("-F", str(hz))),
                            (f"perf record -a --call-graph dwarf -F {hz}",
                             cost.perf_dwarf_all_cpus(hz)),
                            (f"BCC profile-bpfcc -F {hz} -f (frame pointers)",
                             cost.bcc_profile_all_cpus(hz))):
            tool = {"perf": "perf", "BCC": "profile-bpfcc"}.get(name.split()[0])
            if tool and not shutil.which(tool):
                rows.append([name, f"{hz} Hz", f"{tool} is not installed", "", "", "", ""])
                continue
            r = cost.compare(start, rounds, seconds)
            data[name] = r
            rows.append(cost.row(name, hz, r))
    return rows, data


class PytracekitReader(Pytracekit):
    """bench/profile_reader.py: its read + naming times and peak RSS in self.report."""

    def __init__(self):
        super().__init__(name="pytracekit profile (read + name)")

    def start(self, pids, hz):
        self._launch_ready([PY, "-m", "bench.profile_reader", ",".join(map(str, pids)),
                            str(hz)])

    def finish(self) -> Result:
        out, _, res = communicate_then_rusage(self)
        self.report = json.loads(out.splitlines()[-1]) if not res.error else {}
        return res


def naming(target_samples: int, hz: int) -> tuple[list[list[str]], dict]:
    ncpu = os.cpu_count() or 1
    cpu_s = pick(target_samples, 1000) / hz
    busy = [subprocess.Popen([DEBIAN_PYTHON, "-c", BUSY, "3600"]) for _ in range(ncpu)]
    reader, perf, bcc = PytracekitReader(), PerfDwarf(keep=True, stacks=False), BccProfile()
    try:
        time.sleep(0.3)
        results = side_by_side([reader, bcc, perf], [b.pid for b in busy], hz, cpu_s)
    finally:
        for b in busy:
            b.kill()
            b.wait()
    rows, data = [], {"cpu_s": cpu_s, "hz": hz}
    r = results[reader.name]
    if r.error:
        rows.append([reader.name, "", r.error, "", ""])
    else:
        rep = reader.report
        rows.append(["pytracekit: read + name (cold: first read)", f"{rep['samples']:,}",
                     f"{rep['cold_s']:.2f} s", f"{rep['peak_rss_kib'] / 1024:.0f}",
                     f"{rep['stacks']:,} stacks; {rep['unknown_frames']:,} unnamed frames "
                     f"of {rep['frames']:,}; unwound in the kernel while sampling"])
        rows.append(["pytracekit: read + name (warm)", "same", f"{rep['warm_s']:.2f} s", "",
                     ""])
        data["pytracekit"] = {**rep, "cpu_s_whole_run": r.cpu_s}
    r = results[bcc.name]
    if r.error:
        rows.append([bcc.name, "", r.error, "", ""])
    else:
        # BCC names every stack after SIGINT: SIGINT to exit is that naming
        rows.append([f"BCC profile-bpfcc -F {hz} -f (frame pointers): SIGINT to exit",
                     f"{r.samples:,}", f"{r.after_stop_s:.2f} s",
                     f"{r.peak_rss_kib / 1024:.0f}", f"{_pct(r.unnamed_share())} frames unnamed"])
        data["bcc"] = {"samples": r.samples, "sigint_to_exit_s": r.after_stop_s,
                       "peak_rss_kib": r.peak_rss_kib}
    r = results[perf.name]
    if r.error:
        rows.append([perf.name, "", r.error, "", ""])
    else:
        data["perf"] = _perf_report(perf.data, rows, r)
    if hasattr(perf, "dir"):
        shutil.rmtree(perf.dir, ignore_errors=True)
    return rows, data


def _perf_report(path: Path, rows: list[list[str]], record: Result) -> dict:
    """Time `perf report` twice on perf's recording (it unwinds and names every sample)."""
    samples = len(subprocess.run(["perf", "script", "-i", str(path), "-F", "time"],
                                 capture_output=True, text=True).stdout.splitlines())
    out = {"samples": samples, "record_peak_rss_kib": record.peak_rss_kib,
           "record_cpu_s": record.cpu_s}
    for run in ("cold: first report", "warm"):
        t0 = time.perf_counter()
        proc = subprocess.Popen(["perf", "report", "-i", str(path), "--stdio"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu_s, rss = wait_measured(proc, 900)
        wall = time.perf_counter() - t0
        out[run.split(":")[0]] = {"wall_s": wall, "cpu_s": cpu_s, "peak_rss_kib": rss}
        rows.append([f"perf report --stdio ({run})", f"{samples:,}", f"{wall:.2f} s",
                     f"{rss / 1024:.0f}", "perf record's own peak RSS "
                     f"{record.peak_rss_kib / 1024:.0f} MiB" if run != "warm" else ""])
    return out


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}%"


def main() -> None:
    if os.geteuid() != 0:
        print("needs root")
        return
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    hz = 199
    cpu_s = pick(8, 2)
    rows, reach_data = reach(hz, cpu_s)
    print(table([f"workload ({hz} Hz, {cpu_s} s of its CPU, same process)", "sampler", "samples",
                 "reach the program's start", "frames unnamed"], rows))
    print()
    rows, tops, exact_data = exact_stacks(hz, cpu_s)
    print(table([f"workload -O2 -fomit-frame-pointer spin ({hz} Hz, {cpu_s} s)", "samples",
                 "exactly _start..main;spin_outer;spin_inner", "reach start"], rows))
    print()
    print(table(["sampler", "biggest folded stacks", "samples"], tops))
    print()
    rows, cost_data = cost_all_cpus([99, 999], pick(5, 1), pick(3.0, 1.0))
    print(table(cost.HEADERS, rows))
    print()
    rows, naming_data = naming(10000, 999)
    print(table([f"{os.cpu_count()} python3 busy loops, 999 Hz, same processes", "samples",
                 "time", "peak RSS (MiB)", "notes"],
                rows))
    write_json("unwind", {"started": started, "reach": reach_data, "exact": exact_data,
                          "cost": cost_data, "naming": naming_data})


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

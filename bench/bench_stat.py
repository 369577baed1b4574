"""stat against perf stat: the whole run of `stat -e syscalls:sys_enter_openat -- CMD`
(launch to exit, counting 100,000 opens), plain, with a filter the kernel applies
itself, and with one only BPF counts exactly (compiled), interleaved rounds.

Both count the same command with the same counters; the counts are checked equal.
Python modules are byte-compiled first, as an installed package's are.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time

from bench.common import PY, ROOT, median, table

WORKLOAD = ROOT / "tests" / "workload" / ".build" / "workload"
OPENAT = "syscalls:sys_enter_openat"
OPENS = "100000"
ROUNDS = 7
CASES = [("plain", [], []),
         ("--filter 'flags & 64' (kernel filter)", ["--filter", "flags & 64"],
          ["--filter", "flags & 64"]),
         # the same test: BPF reads `int dfd` as declared, the kernel all 8 bytes
         ("--filter 'dfd == -100' (BPF)", ["--filter", "dfd == -100"],
          ["--filter", "dfd == 0xffffff9c"])]


def _run(argv: list[str]) -> tuple[float, float, str]:
    """Wall time, CPU time (the tool and the command it waited for) and output."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _pid, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, argv)
        out.seek(0)
        return elapsed, usage.ru_utime + usage.ru_stime, out.read()


def _count(output: str) -> int:
    m = re.search(rf"^\s*([\d,]+)\s+{OPENAT}", output, re.M)
    return int(m.group(1).replace(",", "")) if m else -1


def main() -> None:
    if not WORKLOAD.exists():
        WORKLOAD.parent.mkdir(parents=True, exist_ok=True)
        source = WORKLOAD.parent.parent / "workload.c"
        subprocess.run(["gcc", "-O0", "-g", "-fno-omit-frame-pointer", "-fno-inline", "-pthread",
                        "-o", str(WORKLOAD), str(source)], check=True)
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "pytracekit")], check=True,
                   stdout=subprocess.DEVNULL)
    marker = tempfile.mktemp(prefix="ptk-bench-")
    cmd = [str(WORKLOAD), "open", marker, OPENS]
    have_perf = shutil.which("perf") is not None
    bare, bare_cpu, times, cpu, counts = [], [], {}, {}, {}
    _run([PY, "-m", "pytracekit", "stat", "-e", OPENAT, *CASES[2][1], "--", *cmd])  # warm up
    for _ in range(ROUNDS):
        elapsed, cpu_s, _ = _run(cmd)
        bare.append(elapsed)
        bare_cpu.append(cpu_s)
        for name, ours, theirs in CASES:
            for who, argv in (("ours", [PY, "-m", "pytracekit", "stat", "-e", OPENAT, *ours]),
                              ("perf", ["perf", "stat", "-e", OPENAT, *theirs])):
                if who == "perf" and not have_perf:
                    continue
                elapsed, cpu_s, out = _run([*argv, "--", *cmd])
                times.setdefault((name, who), []).append(elapsed)
                cpu.setdefault((name, who), []).append(cpu_s)
                counts[(name, who)] = _count(out)
    rows = []
    for name, _, _ in CASES:
        ours = median(times[(name, "ours")])
        perf = median(times[(name, "perf")]) if have_perf else float("nan")
        ours_cpu = median(cpu[(name, "ours")])
        perf_cpu = median(cpu[(name, "perf")]) if have_perf else float("nan")
        same = counts[(name, "ours")] == counts.get((name, "perf"))
        rows.append([name, f"{ours:.3f}", f"{perf:.3f}", f"{ours / perf:.2f}x",
                     f"{ours_cpu:.3f} / {perf_cpu:.3f}", f"{ours_cpu / perf_cpu:.2f}x",
                     f"{counts[(name, 'ours')]:,}" + ("" if same else
                                                      f" (perf {counts.get((name, 'perf'))})")])
    print(f"`stat -e {OPENAT} -- workload open PATH {OPENS}`, whole run (launch to exit), "
          f"median of {ROUNDS} interleaved rounds; the workload alone: {median(bare):.3f} s "
          f"({median(bare_cpu):.3f} s CPU). CPU time is the tool's and the command's: on a "
          "busy machine it is the steadier measure.\n")
    print(table(["stat", "pytracekit (s)", "perf stat (s)", "vs perf stat",
                 "CPU s, pytracekit / perf", "CPU vs perf", "opens counted"], rows))

"""A source-line probe's cost per hit against a function uprobe.

The workload's `lineloop N` runs line_loop(): N iterations, each calling
line_sink(i, sq, parity) from the line marked LINE_PROBE. Both probes fire N
times: an entry uprobe on line_sink, and a line probe on that call's line
(BINARY:line_loop:REL, a uprobe at an address inside line_loop). Each is
timed with an empty BPF program and with argdist reading sq (the function
probe reads it as its second argument, the line probe by name from DWARF),
in the -O0 frame-pointer build (sq read from the stack) and an -O2 build (sq
in a register). Added cost per hit = (traced - untraced CPU time) / N, the
fastest of several runs (bench_funccount's method).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bench_funccount import ROUNDS, _bpf_stats, _program_ns, _timed_runs, _with_empty_program
from bench import common
from bench.common import ROOT, table

sys.path.insert(0, str(ROOT))
SOURCE = ROOT / "tests" / "workload" / "workload.c"
WORKLOAD = ROOT / "tests" / "workload" / ".build" / "workload"
# conftest.NOFP_FLAGS: how the tests build the -O2 workload
O2_FLAGS = ["-O2", "-fomit-frame-pointer", "-fno-optimize-sibling-calls", "-fno-inline", "-g",
            "-pthread"]


def _rel_line() -> int:
    lines = SOURCE.read_text().splitlines()
    decl = next(i for i, l in enumerate(lines, 1) if l.startswith("NOINLINE void line_loop("))
    return next(i for i, l in enumerate(lines, 1) if "/* LINE_PROBE */" in l) - decl


def _with_argdist(spec: str, argv: list[str]) -> tuple[float, float, int]:
    from pytracekit.tools import argdist
    with _bpf_stats():
        running = argdist.start(hist_specs=[spec])
        try:
            seconds = _timed_runs(argv)
            (_probe, hist), = running.read()
            hits = sum(hist.buckets.values())
            run_ns = _program_ns(running.prog, "argdist_probe_0")
        finally:
            running.close()
    return seconds, run_ns, hits


def _rows(binary: str, build: str, iterations: int, control: bool) -> list[list[str]]:
    """`control`: also a uprobe at line_sink+1 (its second instruction, which the
    kernel single-steps, unlike the `push %rbp` at its entry that it emulates)."""
    argv = [binary, "lineloop", str(iterations)]
    base = _timed_runs(argv)
    rel = _rel_line()
    probes = [("function uprobe line_sink", "line_sink")]
    if control:
        probes.append(("uprobe line_sink+0x1", "line_sink+0x1"))
    out = []
    for label, spec, argdist_spec in [
            (label, f"{binary}:{where}", f"p:{binary}:{where}(int i, long sq):long:sq")
            for label, where in probes] + [
            (f"line probe line_loop:{rel}", f"{binary}:line_loop:{rel}",
             f"p:{binary}:line_loop:{rel}:long:sq")]:
        empty, empty_run = _with_empty_program(spec, argv)
        counted, count_run, hits = _with_argdist(argdist_spec, argv)
        out.append([build, label, str(iterations), f"{(empty - base) / iterations * 1e9:.0f}",
                    f"{(counted - base) / iterations * 1e9:.0f}",
                    f"{empty_run:.0f} / {count_run:.0f}", str(hits)])
    return out


def main() -> None:
    if os.geteuid() != 0:
        print("needs root")
        return
    iterations = 20_000 if common.QUICK else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        o2 = str(Path(tmp) / "workload-O2")
        subprocess.run(["gcc", *O2_FLAGS, "-o", o2, str(SOURCE)], check=True)
        rows = _rows(str(WORKLOAD), "-O0 -fno-omit-frame-pointer", iterations, True) + \
            _rows(o2, "-O2 -fomit-frame-pointer", iterations, False)
    print(table(["build", "probe", "hits", "empty BPF +ns/hit", "argdist -H sq +ns/hit",
                 "BPF run ns empty / argdist", "argdist hits"], rows))
    print(f"\nFastest of {ROUNDS} runs each, CPU time of the workload. Both probes fire once "
          "per iteration; argdist reads sq as line_sink's second argument or, at the line, "
          "by name from DWARF (the stack at -O0, a register at -O2). argdist hits: all "
          f"{ROUNDS + 1} runs (one warm-up), and any other process running that binary. A uprobe costs most where the kernel must "
          "single-step the probed instruction out of line (a second trap) instead of "
          "emulating it (push, nop, jumps, calls): -O0's line_sink starts with an emulated "
          "`push %rbp`, its +0x1 and -O2's entry are single-stepped, as line probes usually are.")


if __name__ == "__main__":
    main()

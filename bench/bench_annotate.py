"""annotate: how long `pytracekit annotate -i REC FUNCTION` takes on a 10,000-sample
recording of a large binary (the whole command: start-up, reading the recording,
symbols, objdump on the function, DWARF lines when the binary has them).

1. Real: python3 (Debian's, 6.8 MB, no DWARF) running json/re/sort, recorded with
   `record -F 4999 --no-python`; its hottest function is annotated.
2. Synthetic, 10,000 samples in 1,000 stacks spread over every instruction of one
   function (written with recording.save, as record writes them): python3's
   `_PyEval_EvalFrameDefault` (55 KB of code), chromium's `ChromeMain` (a 297 MB
   binary with only .dynsym), and libc's `qsort_r` with its DWARF from libc6-dbg.
"""
from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import PY, ROOT, pick, table
from bench.bench_profile import BUSY

TARGETS = [("/usr/bin/python3.11", "_PyEval_EvalFrameDefault"),
           ("/usr/lib/chromium/chromium", "ChromeMain"),
           ("/lib/x86_64-linux-gnu/libc.so.6", "qsort_r")]


def _timed(args: list[str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    res = subprocess.run([PY, "-m", "pytracekit", *args], cwd=ROOT, capture_output=True,
                         text=True)
    return time.perf_counter() - start, res


def best_of(args: list[str], repeat: int = 3) -> tuple[float, subprocess.CompletedProcess]:
    runs = [_timed(args) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[-1][1]


def synthetic(path: str, function: str, out: Path, samples: int = 10_000,
              stacks: int = 1_000, seed: int = 1) -> None:
    """A recording of `samples` samples whose leaf is `function`, in `stacks` stacks."""
    from pytracekit.symbolize import disasm
    from pytracekit.symbolize.elfsyms import ElfSymbols
    from pytracekit.model import Frame, Sample, StackProfile
    from pytracekit.collect.recording import save
    from pytracekit.symbolize.symbols import module_info
    syms = ElfSymbols.load(path)
    i = syms.names.index(function)
    insns = sorted(disasm.disassemble(path, syms.starts[i], syms.ends[i]))
    info = module_info(syms)
    rng = random.Random(seed)
    out_samples = []
    for k in range(stacks):
        leaf = Counter(rng.choice(insns) for _ in range(samples // stacks))
        frames = (Frame("bench", "process"), Frame("main", "user", "x", 0, 0, info),
                  Frame(f"caller_{k % 50}", "user", "x", 0, 0, info),
                  Frame(function, "user", Path(path).name, 0, insns[0], info))
        out_samples.append(Sample(frames, sum(leaf.values()), 1, 1, "bench",
                                  tuple(sorted(leaf.items()))))
    save(StackProfile(out_samples, period=1_000_000), str(out))


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="ptk-bench-annotate-"))
    rows = []
    try:
        rec = tmp / "python3.ptk"
        seconds = pick(6, 2)
        subprocess.run([PY, "-m", "pytracekit", "record", "-F", "4999", "--no-python",
                        "-o", str(rec), "--", "/usr/bin/python3.11", "-c", BUSY, str(seconds)],
                       cwd=ROOT, check=True, capture_output=True)
        from pytracekit.collect.recording import load
        prof = load(str(rec))
        leaves = Counter()
        for s in prof.samples:
            if s.stack and s.stack[-1].image is not None:
                leaves[s.stack[-1].name] += s.value
        hottest = leaves.most_common(1)[0][0]
        took, res = best_of(["annotate", "-i", str(rec), hottest])
        rows.append([f"python3 (recorded {seconds} s at 4999 Hz)", hottest, str(prof.total),
                     f"{took:.2f}", "yes" if res.returncode == 0 else res.stderr.strip()])
        for path, function in TARGETS:
            if not Path(path).exists():
                continue
            out = tmp / (Path(path).name + ".ptk")
            synthetic(path, function, out)
            took, res = best_of(["annotate", "-i", str(out), function])
            lines = "lines" if " Line " in res.stdout else "instructions only"
            rows.append([f"{Path(path).name} (synthetic)", function, "10000", f"{took:.2f}",
                         ("yes, " + lines) if res.returncode == 0 else res.stderr.strip()])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(table(["binary", "function", "samples", "seconds (best of 3, whole command)", "ok"],
                rows))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()

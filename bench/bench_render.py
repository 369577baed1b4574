"""How long each stack renderer takes on a big profile, and how big its output is.

The profile looks like a large program's: stacks share long prefixes (a call
tree with a fan-out of 8), with some kernel frames at the leaves.
"""
from __future__ import annotations

import random
import time

from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.render.flamegraph import flamegraph_html
from pytracekit.render.folded import folded, parse_folded
from pytracekit.render.pprof import from_pprof, to_pprof
from pytracekit.render.speedscope import to_speedscope


def big_profile(stacks: int, depth: int = 24, seed: int = 1) -> StackProfile:
    rng = random.Random(seed)
    process = Frame("python3", "process")
    samples = []
    for _ in range(stacks):
        path = [process]
        for level in range(depth):
            path.append(Frame(f"fn_{level}_{rng.randrange(8)}", "user", "/usr/bin/python3",
                              0x400000 + level * 0x100))
        if rng.random() < 0.3:
            path += [Frame("entry_SYSCALL_64", "kernel"), Frame(f"sys_{rng.randrange(5)}",
                                                                 "kernel")]
        samples.append(Sample(tuple(path), rng.randint(1, 50), 100, 100, "python3"))
    return StackProfile(samples, period=10_101_010).merged()


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    print("| stacks | renderer | seconds (best of 3) | output bytes |")
    print("|---:|---|---:|---:|")
    for stacks in (1000, 10000):
        profile = big_profile(stacks)
        text = folded(profile)
        data = to_pprof(profile)
        jobs = [("folded", lambda: folded(profile)),
                ("parse_folded", lambda: parse_folded(text)),
                ("flamegraph_html", lambda: flamegraph_html(profile)),
                ("to_pprof", lambda: to_pprof(profile)),
                ("from_pprof", lambda: from_pprof(data)),
                ("to_speedscope", lambda: to_speedscope(profile))]
        for name, job in jobs:
            seconds, out = best_of(job)
            size = len(out) if isinstance(out, (str, bytes)) else 0
            print(f"| {len(profile.samples)} | {name} | {seconds:.3f} | "
                  f"{size if size else '-'} |", flush=True)


if __name__ == "__main__":
    main()

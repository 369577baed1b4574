"""Launch-to-attached time and peak RSS of a one-tracepoint tool, side by side:
pytracekit (per-program BTF header, compiled: the program cache off), the same
program through BCC with the whole BTF dump, bpftrace, and libbpf-tools'
syscount (the same job in C). Then compiled against loaded from the program
cache (pytracekit/engine/progcache.py) for funccount, trace and profile of a Python
process with and without its Python frames."""
from __future__ import annotations

import shutil
import subprocess
import time

from bench.common import PY, ROOT, median, pick, table, time_until_ready

RUNS = 7
EXAMPLE = str(ROOT / "examples" / "count_syscalls.py")
COMPILED = {"PYTRACEKIT_NO_PROGRAM_CACHE": "1"}
CACHED = {"PYTRACEKIT_NO_PROGRAM_CACHE": ""}
# .pyc files as an installed pytracekit would have them (see bench_python.PYC)
PYC = {"PYTHONDONTWRITEBYTECODE": ""}


def contenders() -> list[tuple[str, list[str], object]]:
    found = [
        ("pytracekit (examples/count_syscalls.py)", [PY, EXAMPLE], None),
        ("pytracekit funccount t:raw_syscalls:sys_enter",
         [PY, "-m", "pytracekit", "funccount", "t:raw_syscalls:sys_enter"], None),
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
    import subprocess
    subprocess.run([PY, str(ROOT / "bench" / "full_dump_bcc.py"), "--prepare"], check=True)
    rows = []
    results = {}
    for name, argv, ready in contenders():
        times, peaks = [], []
        env = COMPILED if name.startswith("pytracekit") else None
        time_until_ready(argv, ready, env=env)   # warm-up (page cache, header cache)
        for _ in range(RUNS):
            elapsed, peak = time_until_ready(argv, ready, env=env)
            times.append(elapsed)
            peaks.append(peak)
        results[name] = median(times)
        rows.append([name, f"{median(times):.3f}", f"{min(times):.3f}", f"{max(times):.3f}",
                     f"{max(peaks) / 1024:.0f}"])
    print(table(["tool", "median launch-to-attached (s)", "min", "max", "peak RSS (MiB)"], rows))
    ours = results[rows[0][0]]
    baseline = results[rows[2][0]]
    print(f"\npytracekit is {baseline / ours:.1f}x faster to attach than BCC with the whole "
          f"BTF dump ({RUNS} runs each, medians).")
    print()
    cached_rows()


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

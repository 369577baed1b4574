"""Launch-to-attached time and peak RSS of a one-tracepoint tool, side by side:
pytracekit (per-program BTF header), the same program through BCC with the
whole BTF dump, bpftrace, and libbpf-tools' syscount (the same job in C)."""
from __future__ import annotations

import shutil

from bench.common import PY, ROOT, median, table, time_until_ready

RUNS = 7
EXAMPLE = str(ROOT / "examples" / "count_syscalls.py")


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
        time_until_ready(argv, ready)   # warm-up (page cache, header cache)
        for _ in range(RUNS):
            elapsed, peak = time_until_ready(argv, ready)
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

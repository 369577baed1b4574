"""Helpers shared by benchmarks: time a command until it is attached, peak RSS."""
from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv").exists() else sys.executable


def time_until_ready(argv: list[str], ready, *, env: dict | None = None,
                     timeout: float = 60) -> tuple[float, int]:
    """Seconds from launch until `ready(line)` is true for an output line (or the
    PYTRACEKIT_READY_FD signal when ready is None), and the child's peak RSS in KiB."""
    rfd, wfd = os.pipe()
    full_env = {**os.environ, **(env or {})}
    if ready is None:
        full_env["PYTRACEKIT_READY_FD"] = str(wfd)
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=full_env, pass_fds=(wfd,) if ready is None else (),
                            cwd=ROOT)
    os.close(wfd)
    elapsed = float("nan")
    deadline = start + timeout
    buf = b""
    while time.perf_counter() < deadline:
        fds = [rfd] if ready is None else [proc.stdout]
        r, _, _ = select.select(fds, [], [], 0.05)
        if ready is None and r:
            if os.read(rfd, 16):
                elapsed = time.perf_counter() - start
                break
        elif r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            if any(ready(l) for l in buf.decode(errors="replace").splitlines()):
                elapsed = time.perf_counter() - start
                break
        if proc.poll() is not None and not r:
            break
    os.close(rfd)
    peak_kib = _vm_hwm_kib(proc.pid)
    proc.send_signal(2)
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
    return elapsed, peak_kib


def _vm_hwm_kib(pid: int) -> int:
    """Peak RSS of a live process (what `time -v` would report at its end)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def median(xs: list[float]) -> float:
    xs = [x for x in xs if x == x]
    return statistics.median(xs) if xs else float("nan")


def table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


# `python -m bench --quick ...`: every section that reads this runs short (seconds, not
# minutes) to check that it works end to end; its figures are not for the README.
QUICK = False
RESULTS = ROOT / "bench" / "results"


def pick(full, quick):
    """`full` in a real run, `quick` under --quick."""
    return quick if QUICK else full


def write_json(section: str, data: dict) -> Path:
    """bench/results/SECTION.json (ignored by git): the figures behind the tables."""
    import json
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{section}.json"
    path.write_text(json.dumps({"quick": QUICK, **data}, indent=1, sort_keys=True) + "\n")
    print(f"\n(written to {path.relative_to(ROOT)})")
    return path


def tests_module(name: str):
    """A helper module of tests/ (interpreter discovery, the workload builds): the bench
    runs what the tests run, from one definition."""
    import importlib
    tests = str(ROOT / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module(name)


def wait_measured(proc: subprocess.Popen, timeout: float = 300) -> tuple[float, int]:
    """Wait for a child: (its CPU seconds from wait4's rusage, its peak RSS in KiB).

    The peak is the largest VmHWM seen while it lives, polled until it exits: wait4's
    ru_maxrss is no use here, as exec records the old image's high-water mark in it, and
    the old image of a child this bench forks is the bench's own (hundreds of MiB).
    Whatever it maps in its last poll interval (10 ms) before exiting is not seen."""
    deadline = time.monotonic() + timeout
    peak_kib = 0
    while True:
        peak_kib = max(peak_kib, _vm_hwm_kib(proc.pid))
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime, peak_kib
        if time.monotonic() > deadline:
            proc.kill()
            deadline = float("inf")
        time.sleep(0.01)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a live process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bcc_kernel_tree() -> Path:
    """BCC's tools need BCC_KERNEL_SOURCE here (no kernel headers): pytracekit's generated
    tree plus the three definitions profile.py also needs (bpf_perf_event.h, TASK_COMM_LEN,
    PAGE_OFFSET), in a temporary copy; remove its parent when done."""
    import shutil
    import tempfile
    from pytracekit.kernel import headers
    tree = Path(tempfile.mkdtemp(prefix="ptk-bcc-")) / "kernel"
    shutil.copytree(headers.include_tree().source, tree)
    (tree / "include/uapi/linux/bpf_perf_event.h").write_text(
        "#ifndef _UAPI__LINUX_BPF_PERF_EVENT_H__\n#define _UAPI__LINUX_BPF_PERF_EVENT_H__\n"
        "#include <asm/ptrace.h>\ntypedef struct pt_regs bpf_user_pt_regs_t;\n"
        "struct bpf_perf_event_data { bpf_user_pt_regs_t regs; __u64 sample_period; "
        "__u64 addr; };\n#endif\n")
    with open(tree / "include/linux/sched.h", "a") as f:
        f.write("\n#ifndef TASK_COMM_LEN\n#define TASK_COMM_LEN 16\n#endif\n")
    with open(tree / "arch/x86/include/asm/page.h", "a") as f:
        f.write("\n#ifndef PAGE_OFFSET\n#define PAGE_OFFSET 0xffff800000000000UL\n#endif\n")
    return tree


def perf_event_fds(pid: int) -> int:
    """How many perf events a process holds open (a profiler is attached when
    it holds one per CPU)."""
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                n += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[perf_event]"
            except OSError:
                pass
    except OSError:
        pass
    return n

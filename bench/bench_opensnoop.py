"""opensnoop under a storm: one process opening a marker path 1,000,000 times
as fast as it can (the workload's `open PATH N`), untraced and traced by
pytracekit opensnoop, libbpf-tools' opensnoop and bpftrace, side by side.

For each: the workload's wall time, the cost added per open, how many of the
opens the tracer printed, and what it says it lost. Each tracer filters on the
process name "workload" and writes to a file, as `tool > file` would.

  PTK_BENCH_OPENS=200000 python -m bench opensnoop     # a shorter run

pytracekit runs 5 times (PTK_BENCH_RUNS): "0 lost" must hold in every run, not
on average; the reference tracers, at ~11 us an open, run twice (PTK_BENCH_REF_RUNS).
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import PY, ROOT, median, table

OPENS = int(os.environ.get("PTK_BENCH_OPENS", "1000000"))
RUNS = int(os.environ.get("PTK_BENCH_RUNS", "5"))
REF_RUNS = int(os.environ.get("PTK_BENCH_REF_RUNS", "2"))
WORKLOAD = ROOT / "tests" / "workload" / ".build" / "workload"
LIBBPF_OPENSNOOP = "/usr/sbin/opensnoop"

BPFTRACE_SCRIPT = r"""
tracepoint:syscalls:sys_enter_openat /comm == "workload"/ { @path[tid] = args->filename; }
tracepoint:syscalls:sys_exit_openat /@path[tid]/ {
    printf("%d %s %d %s\n", pid, comm, args->ret, str(@path[tid]));
    delete(@path[tid]);
}
"""


def _workload() -> str:
    if not WORKLOAD.exists():
        WORKLOAD.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O0", "-g", "-fno-omit-frame-pointer", "-fno-inline", "-pthread",
                        "-o", str(WORKLOAD), str(WORKLOAD.parent.parent / "workload.c")],
                       check=True)
    return str(WORKLOAD)


def _time_workload(marker: str) -> float:
    start = time.perf_counter()
    subprocess.run([_workload(), "open", marker, str(OPENS)], check=True)
    return time.perf_counter() - start


def _lines_with(path: Path, marker: str) -> int:
    count = 0
    with open(path, "rb") as f:
        needle = marker.encode()
        for line in f:
            if needle in line:
                count += 1
    return count


def _wait_for(predicate, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _settle(path: Path, timeout: float = 60) -> None:
    """Wait until the tracer's output stops growing (it has drained its buffer)."""
    last, still = -1, 0
    end = time.monotonic() + timeout
    while time.monotonic() < end and still < 10:
        size = path.stat().st_size
        still = still + 1 if size == last else 0
        last = size
        time.sleep(0.1)


def _traced(argv: list[str], ready, marker: str, workdir: Path, env=None,
            pass_fds: tuple[int, ...] = ()) -> tuple[float, int, str]:
    """Start a tracer writing to a file, run the workload once it is ready,
    wait for the output to settle, stop it: (workload seconds, printed, stderr)."""
    out_path, err_path = workdir / "out.txt", workdir / "err.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, env=env,
                                pass_fds=pass_fds)
    for fd in pass_fds:
        os.close(fd)
    try:
        if not _wait_for(lambda: ready(out_path, err_path), 60):
            raise RuntimeError(f"{argv[0]} never became ready: {err_path.read_text()[-300:]}")
        time.sleep(0.5)
        seconds = _time_workload(marker)
        _settle(out_path)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return seconds, _lines_with(out_path, marker), err_path.read_text(errors="replace")


def _ptk(marker: str, workdir: Path) -> tuple[float, int, str]:
    ready_r, ready_w = os.pipe()
    os.set_blocking(ready_r, False)
    signalled = []

    def ready(_out, _err) -> bool:       # PYTRACEKIT_READY_FD: probes are attached
        try:
            signalled.append(os.read(ready_r, 16))
        except BlockingIOError:
            pass
        return any(signalled)

    try:
        return _traced([PY, "-m", "pytracekit", "opensnoop", "-n", "workload"], ready, marker,
                       workdir, env={**os.environ, "PYTRACEKIT_READY_FD": str(ready_w)},
                       pass_fds=(ready_w,))
    finally:
        os.close(ready_r)


def _libbpf(marker: str, workdir: Path) -> tuple[float, int, str]:
    # Its header sits in stdio's buffer (stdout is a file), so give it time to
    # load and attach instead (it takes well under a second here).
    started = time.monotonic()
    return _traced([LIBBPF_OPENSNOOP, "-n", "workload"],
                   lambda _out, _err: time.monotonic() - started > 3, marker, workdir)


def _bpftrace(marker: str, workdir: Path) -> tuple[float, int, str]:
    return _traced(["bpftrace", "-e", BPFTRACE_SCRIPT],
                   lambda out, _err: b"Attaching" in out.read_bytes()[:200], marker, workdir)


def _lost(tool: str, stderr: str) -> str:
    if tool == "pytracekit":
        match = re.search(r"(\d+) events captured, (\d+) lost", stderr)
        return match[2] if match else "?"
    numbers = [int(n) for n in re.findall(r"[Ll]ost (\d+) events?", stderr)]
    return str(sum(numbers))


def main() -> None:
    tracers = [("pytracekit opensnoop", "pytracekit", _ptk)]
    if Path(LIBBPF_OPENSNOOP).exists():
        tracers.append(("libbpf-tools opensnoop", "libbpf", _libbpf))
    if shutil.which("bpftrace"):
        tracers.append(("bpftrace one-liner", "bpftrace", _bpftrace))
    with tempfile.TemporaryDirectory(prefix="bench-opensnoop-", dir="/var/tmp") as tmp:
        workdir = Path(tmp)
        marker = str(workdir / "marker")
        # Load on a shared machine drifts: each traced run is paired with an
        # untraced run just before it, and the cost is the median difference.
        bases: list[float] = []
        rows = []
        for label, key, run in tracers:
            pairs = []
            for _ in range(RUNS if key == "pytracekit" else REF_RUNS):
                base = _time_workload(marker)
                pairs.append((base, run(marker, workdir)))
            bases += [b for b, _ in pairs]
            seconds = median([r[0] for _, r in pairs])
            added = median([(r[0] - b) / OPENS * 1e6 for b, r in pairs])
            printed = min(r[1] for _, r in pairs)
            lost = ", ".join(_lost(key, r[2]) for _, r in pairs)
            rows.append([label, f"{seconds:.2f}", f"{added:.2f}", f"{printed:,} / {OPENS:,}",
                         lost])
        rows.insert(0, ["untraced", f"{median(bases):.2f}", "-", "-", "-"])
    print(f"{OPENS:,} opens of one path by one process; median of {RUNS} runs (pytracekit) "
          f"or {REF_RUNS} (the others), each paired with an untraced run just before it; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end.\n")
    print(table(["tracer", "workload s", "added us/open", "printed (worst run)",
                 "lost (per run)"], rows))


if __name__ == "__main__":
    main()

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

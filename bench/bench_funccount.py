"""funccount's cost per event against an empty BPF program and bpftrace.

The workload does a known number of events (`calls N`: N uprobe hits on
counted_function; `open PATH N`: N sys_enter_openat hits); each is timed with
no probe, with an empty BPF program on the same probe, with funccount, and
with bpftrace counting the same probe. Added cost per event = (traced run -
untraced run) / N, taking the fastest of several runs (load only adds time).
Then the time funccount takes to attach and to detach many libc uprobes,
through uprobe_multi links and through BCC's one perf event per probe.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from bench.common import ROOT, table

sys.path.insert(0, str(ROOT))
WORKLOAD = ROOT / "tests" / "workload" / ".build" / "workload"
ROUNDS = 7
# {ret}: what a program at the probe returns (PTK_TP_PASS on a tracepoint, as
# funccount's), so both pay the same for it.
EMPTY = '#include "vmlinux.h"\n#include "pytracekit.h"\nint empty(void *ctx) {{ return {ret}; }}\n'


def _time(argv: list[str]) -> float:
    """CPU time (user + system) of one workload run: probe handlers run in
    the traced process's context, and unlike wall-clock time this does not
    grow while the process waits for a CPU on a busy machine."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def _timed_runs(argv: list[str]) -> float:
    _time(argv)   # warm caches (page cache, dentries) outside the measurement
    # The fastest run: other load on the machine only ever adds time.
    return min(_time(argv) for _ in range(ROUNDS))


@contextmanager
def _bpf_stats():
    """Let the kernel time every BPF program run (kernel.bpf_stats_enabled)."""
    path = Path("/proc/sys/kernel/bpf_stats_enabled")
    before = path.read_text().strip()
    path.write_text("1")
    try:
        yield
    finally:
        path.write_text(before)


def _program_ns(prog, fn_name: str) -> float:
    """Mean run time of one loaded BPF function, from its fd's fdinfo."""
    fd = prog.bpf.funcs[fn_name.encode()].fd
    info = dict(line.split(":", 1) for line in
                Path(f"/proc/self/fdinfo/{fd}").read_text().splitlines() if ":" in line)
    runs = int(info.get("run_cnt", "0"))
    return int(info.get("run_time_ns", "0")) / runs if runs else float("nan")


def _with_empty_program(spec: str, argv: list[str]) -> tuple[float, float]:
    from pytracekit.api import Tracer
    from pytracekit.probes.specs import parse_spec, program_return
    source = EMPTY.format(ret=program_return(parse_spec(spec).kind))
    with _bpf_stats(), Tracer(source, name="empty") as tracer:
        tracer.probe(spec, "empty")
        tracer.start()
        return _timed_runs(argv), _program_ns(tracer.prog, "empty")


def _with_funccount(spec: str, argv: list[str]) -> tuple[float, float, int]:
    from pytracekit.tools import funccount
    with _bpf_stats():
        counter = funccount.start(spec, announce=False)
        try:
            seconds = _timed_runs(argv)
            hits = sum(counter.read().rows.values())
            loaded = counter.tracer.prog.bpf.funcs
            fn = funccount.MULTI_FUNCTION if funccount.MULTI_FUNCTION.encode() in loaded else "count_0"
            run_ns = _program_ns(counter.tracer.prog, fn)
        finally:
            counter.close()
    return seconds, run_ns, hits


def _with_bpftrace(probe: str, argv: list[str]) -> float:
    proc = subprocess.Popen(["bpftrace", "-e", f"{probe} {{ @hits = count(); }}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(5):   # a memlock warning may come before "Attaching 1 probe..."
            line = proc.stdout.readline()
            if "Attaching" in line or not line:
                break
        if "Attaching" not in line:
            return float("nan")
        time.sleep(0.2)
        return _timed_runs(argv)
    finally:
        proc.send_signal(signal.SIGINT)   # bpftrace prints its maps and exits on Ctrl-C
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def _measure(label: str, spec: str, bpftrace_probe: str, argv: list[str], events: int) -> list[str]:
    base = _timed_runs(argv)
    empty, empty_run = _with_empty_program(spec, argv)
    counted, count_run, hits = _with_funccount(spec, argv)
    bpftrace = _with_bpftrace(bpftrace_probe, argv)

    def per_event(seconds: float) -> float:
        return (seconds - base) / events * 1e9

    empty_ns, count_ns, bt_ns = per_event(empty), per_event(counted), per_event(bpftrace)
    over = (count_ns / empty_ns - 1) * 100 if empty_ns > 0 else float("nan")
    return [label, str(events), f"{base / events * 1e9:.0f}", f"{empty_ns:.0f}",
            f"{count_ns:.0f}", f"{bt_ns:.0f}", f"{over:+.1f}%",
            f"{empty_run:.0f} / {count_run:.0f}", str(hits)]


def _attach_detach(spec: str, multi: bool) -> list[str]:
    """Seconds funccount.start() and close() take on `spec`, with uprobe_multi
    links or (forced) without."""
    from pytracekit.kernel import features
    from pytracekit.tools import funccount
    real = features.uprobe_multi_available
    if not multi:
        features.uprobe_multi_available = lambda: (False, "forced off by the benchmark")
    elif not real()[0]:
        return [spec, "uprobe_multi", "-", "not supported here", "-"]
    try:
        start = time.perf_counter()
        counter = funccount.start(spec, announce=False)
        attached = time.perf_counter()
        probes = len(counter.probes)
        counter.close()
        detached = time.perf_counter()
    finally:
        features.uprobe_multi_available = real
    return [spec, "uprobe_multi" if multi else "perf event each", str(probes),
            f"{attached - start:.2f}", f"{detached - attached:.2f}"]


def main() -> None:
    if os.geteuid() != 0:
        print("needs root")
        return
    calls = 200_000
    opens = 100_000
    with tempfile.TemporaryDirectory() as tmp:
        marker = str(Path(tmp) / "marker")
        rows = [
            _measure("uprobe workload:counted_function", f"{WORKLOAD}:counted_function",
                     f"uprobe:{WORKLOAD}:counted_function",
                     [str(WORKLOAD), "calls", str(calls)], calls),
            _measure("tracepoint syscalls:sys_enter_openat", "t:syscalls:sys_enter_openat",
                     "tracepoint:syscalls:sys_enter_openat",
                     [str(WORKLOAD), "open", marker, str(opens)], opens),
        ]
    print(table(["probe", "events", "untraced ns/event", "empty BPF +ns", "funccount +ns",
                 "bpftrace +ns", "funccount vs empty", "BPF run ns empty / funccount",
                 "funccount hits"], rows))
    print(f"\nFastest of {ROUNDS} runs each, CPU time of the workload; '+ns' is the added "
          "cost per event. 'BPF run ns' is the kernel's own timing of the program body "
          "(kernel.bpf_stats_enabled). The tracepoint row counts every process's openat, so "
          "funccount hits may exceed the workload's.")
    rows = [_attach_detach(spec, multi) for spec in ("c:str*", "c:s*") for multi in (True, False)]
    print()
    print(table(["pattern", "uprobes as", "probes", "attach s", "detach s"], rows))
    print("\nWall-clock seconds of funccount.start() (resolve, compile, attach) and close().")


if __name__ == "__main__":
    main()

"""pytracekit doctor: what this kernel supports, one line each, with evidence.

Static facts (BTF, config, PMUs) are read; everything that can be proven by
doing it (compile, load, attach, see a hit) is done for real.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import click

from ..cli import options
from ..errors import PytracekitError
from ..kernel import features
from ..kernel.features import Check

_HITS = ["tracepoints", "raw tracepoints", "perf software events", "uprobes",
         "stack maps", "ring buffer"]


def _libc_path() -> str:
    return ctypes.util.find_library("c") or "c"


def _live_checks() -> list[Check]:
    """Compile and attach bpf/doctor.bpf.c, provoke each probe, count hits."""
    from ..engine.loader import Program
    from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
    started = time.monotonic()
    try:
        prog = Program.from_file("doctor")
    except PytracekitError as exc:
        return [Check("BCC compiles here", False, exc.message)]
    compile_s = time.monotonic() - started
    checks = [Check("BCC compiles here", True,
                    f"doctor.bpf.c compiled and loaded in {compile_s:.2f} s from BTF-derived headers")]
    errors: dict[int, str] = {}
    with prog:
        own = prog["doctor_pid"]
        own[own.Key(0)] = own.Leaf(os.getpid())
        attempts = [
            (0, lambda: prog.attach_tracepoint("syscalls", "sys_enter_getppid", "on_tracepoint")),
            (1, lambda: prog.attach_raw_tracepoint("sys_enter", "on_raw_tracepoint")),
            (2, lambda: prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["cpu-clock"],
                                               "on_perf_event", sample_freq=999, pid=os.getpid(),
                                               label="cpu-clock")),
            (3, lambda: prog.attach_uprobe("c", "on_uprobe", symbol="getppid",
                                           pid=os.getpid())),
        ]
        for slot, attach in attempts:
            try:
                attach()
            except PytracekitError as exc:
                errors[slot] = exc.message
        prog.ready()
        libc = ctypes.CDLL(_libc_path())
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:   # burn CPU (perf samples) and make calls
            libc.getppid()
        prog["events"].open_ring_buffer(lambda *_: None)
        prog.bpf.ring_buffer_consume()
        hits = [prog["hits"][prog["hits"].Key(i)].value for i in range(len(_HITS))]
    for slot, name in enumerate(_HITS):
        if slot in errors:
            checks.append(Check(name, False, errors[slot]))
        elif hits[slot]:
            checks.append(Check(name, True, f"attached, {hits[slot]} hits in 0.3 s"))
        else:
            checks.append(Check(name, False, "attached but never fired"))
    return checks


def _usdt_check() -> Check:
    import glob
    for binary in sorted(glob.glob("/usr/bin/python3.*")):
        if binary.endswith("-config"):
            continue
        try:
            from ..probes.specs import enumerate_usdt
            probes = enumerate_usdt(binary)
        except Exception as exc:  # bcc raises bare Exception
            return Check("USDT", False, f"reading notes of {binary} failed: {exc}")
        if probes:
            return Check("USDT", True, f"{len(probes)} probes read from {binary} "
                                       "(attached through uprobes)")
    return Check("USDT", False, "no binary with USDT notes found to test")


def run_checks() -> list[Check]:
    checks = [features.check_btf(), features.check_tracefs()]
    live = _live_checks()
    checks += live
    checks.append(features.check_kprobes())
    checks.append(features.check_fentry())
    checks.append(features.check_uprobe_multi())
    checks.append(_usdt_check())
    checks.append(features.check_hardware_events())
    return checks


@click.command("doctor", context_settings=options.TOOL_CONTEXT)
@options.output_options()
@options.standard
def command(out) -> None:
    """Show what this kernel supports, with the evidence for each answer."""
    from ..engine.loader import require_root
    require_root()
    checks = run_checks()
    width = max(len(c.name) for c in checks)
    out.emit(text=[f"{c.name:<{width}}  {'yes' if c.ok else 'no '}  {c.evidence}" for c in checks],
             json=[{"type": "feature", "feature": c.name, "available": c.ok,
                    "evidence": c.evidence} for c in checks])

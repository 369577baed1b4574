"""What this kernel lets pytracekit do, each answer with its evidence.

`pytracekit doctor` prints these; the loader uses the kprobe/fentry checks
to turn an attach that cannot work into a message naming what does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import NotSupportedError
from . import btf as btfmod

PMU_DIR = Path("/sys/bus/event_source/devices")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    evidence: str


def _config() -> dict[str, str]:
    from .headers import read_kernel_config
    out = {}
    for line in (read_kernel_config() or "").splitlines():
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v
        elif line.startswith("# CONFIG_") and line.endswith(" is not set"):
            out[line[2:-11]] = "n"
    return out


@lru_cache(maxsize=1)
def kprobes_available() -> tuple[bool, str]:
    if (PMU_DIR / "kprobe" / "type").exists():
        return True, "kprobe PMU present (/sys/bus/event_source/devices/kprobe)"
    value = _config().get("CONFIG_KPROBES")
    if value == "n":
        return False, "CONFIG_KPROBES is not set; no kprobe PMU, no kprobe_events"
    return False, "no kprobe PMU in /sys/bus/event_source/devices"


def check_btf() -> Check:
    if not btfmod.btf_available():
        return Check("BTF", False, f"{btfmod.VMLINUX_BTF} missing")
    kbtf = btfmod.vmlinux()
    size = os.stat(btfmod.VMLINUX_BTF).st_size
    return Check("BTF", True, f"{btfmod.VMLINUX_BTF}: {size // 1024} KiB, "
                              f"{len(kbtf.by_name)} named types, {len(kbtf.funcs)} functions")


def check_tracefs() -> Check:
    from .tracefs import tracefs_root
    try:
        root = tracefs_root()
    except NotSupportedError as exc:
        return Check("tracefs", False, exc.message)
    return Check("tracefs", True, f"mounted at {root}")


def check_kprobes() -> Check:
    ok, why = kprobes_available()
    return Check("kprobes", ok, why)


def check_uprobe_pmu() -> Check:
    path = PMU_DIR / "uprobe" / "type"
    return Check("uprobe PMU", path.exists(), f"{path} {'present' if path.exists() else 'missing'}")


def check_hardware_events() -> Check:
    from .perf import hardware_supported
    ok, why = hardware_supported()
    return Check("perf hardware events", ok, why)


def require_kprobes(function: str) -> None:
    """Raise a message naming what works instead when kprobes are missing."""
    ok, why = kprobes_available()
    if ok:
        return
    from .tracefs import suggest_tracepoints
    hints = suggest_tracepoints(function)
    hint = (f"; tracepoints that may cover it: {', '.join('t:' + h for h in hints)}"
            if hints else "; use tracepoints instead (`pytracekit list`)")
    raise NotSupportedError(f"cannot probe kernel function {function}: this kernel has no "
                            f"kprobes ({why}) and no fentry{hint}")

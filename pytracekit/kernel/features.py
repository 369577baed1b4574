"""What this kernel lets pytracekit do, each answer with its evidence.

`pytracekit doctor` prints these; the loader uses the kprobe/fentry checks
to turn an attach that cannot work into a message naming what does.
"""
from __future__ import annotations

import errno
import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import NotSupportedError, PytracekitError
from . import bpfsys
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


# The function an fentry probe is tried on: in every kernel since BTF existed.
FENTRY_TEST_FUNCTION = "do_nanosleep"


@lru_cache(maxsize=1)
def fentry_available() -> tuple[bool, str]:
    """Can BPF trampolines be used? Proven by loading a two-instruction fentry
    program (return 0) on FENTRY_TEST_FUNCTION with bpf(2) directly: a kernel
    symbol such as bpf_trampoline_link_prog (what BCC checks) can be present
    while the load is refused, as on the project's machines (EPERM)."""
    if not bpfsys.supported():
        return False, f"BPF trampolines are not probed on {platform.machine()}"
    if not btfmod.btf_available():
        return False, f"fentry needs kernel BTF and {btfmod.VMLINUX_BTF} is missing"
    type_id = btfmod.vmlinux().funcs.get(FENTRY_TEST_FUNCTION)
    if type_id is None:
        return False, f"{FENTRY_TEST_FUNCTION} is not in the kernel's BTF"
    fd, err = bpfsys.load_empty_fentry(type_id)
    if fd >= 0:
        os.close(fd)
        return True, f"an fentry program on {FENTRY_TEST_FUNCTION} loaded"
    name = errno.errorcode.get(err, str(err))
    who = "even as root" if os.geteuid() == 0 else "not being root"
    return False, f"loading an fentry program on {FENTRY_TEST_FUNCTION} fails with {name}, {who}"


def check_fentry() -> Check:
    ok, why = fentry_available()
    return Check("fentry/fexit", ok, why)


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


# The function a uprobe_multi link is tried on: in every libc, rarely called.
UPROBE_MULTI_TEST_FUNCTION = "getpgid"


def _libc_path() -> str | None:
    """The libc this process has mapped, as /proc/self/maps names it."""
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split(None, 5)[-1].strip()
                if "/libc.so" in path or "/libc-" in path:
                    return path
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def uprobe_multi_available() -> tuple[bool, str]:
    """Can one link attach a program to many uprobes (Linux 6.6+)? Proven by
    loading an empty uprobe_multi program and linking it to
    UPROBE_MULTI_TEST_FUNCTION in libc, then closing both: a kernel can know
    the attach type and still refuse the link."""
    if not bpfsys.supported():
        return False, f"uprobe_multi links are not probed on {platform.machine()}"
    libc = _libc_path()
    if libc is None:
        return False, "no libc mapped in this process to try a uprobe_multi link on"
    from ..symbolize import elf
    try:
        symbol = next(s for s in elf.functions(libc) if s.name == UPROBE_MULTI_TEST_FUNCTION)
        offset = elf.file_offset(libc, symbol.address)
    except (StopIteration, PytracekitError):
        return False, f"{UPROBE_MULTI_TEST_FUNCTION} not found in {libc}"
    prog_fd, err = bpfsys.load_empty_uprobe_multi()
    if prog_fd < 0:
        return False, f"loading a uprobe_multi program fails with {errno.errorcode.get(err, err)}"
    try:
        link_fd, err = bpfsys.link_create_uprobe_multi(prog_fd, libc, [offset], [0])
    finally:
        os.close(prog_fd)
    if link_fd < 0:
        return False, (f"a uprobe_multi link on {UPROBE_MULTI_TEST_FUNCTION} fails with "
                       f"{errno.errorcode.get(err, err)}")
    os.close(link_fd)
    return True, f"a uprobe_multi link on {libc}:{UPROBE_MULTI_TEST_FUNCTION} was created"


def check_uprobe_multi() -> Check:
    ok, why = uprobe_multi_available()
    return Check("uprobe_multi links", ok, why)

"""perf_event_open(2) counters, for features that BCC does not wrap
(hardware-event detection, counting software events in `stat`)."""
from __future__ import annotations

import ctypes
import os
import struct

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2

HW_EVENTS = {"cpu-cycles": 0, "cycles": 0, "instructions": 1, "cache-references": 2,
             "cache-misses": 3, "branch-instructions": 4, "branches": 4,
             "branch-misses": 5, "bus-cycles": 6, "ref-cycles": 9}
SW_EVENTS = {"cpu-clock": 0, "task-clock": 1, "page-faults": 2, "faults": 2,
             "context-switches": 3, "cs": 3, "cpu-migrations": 4, "migrations": 4,
             "minor-faults": 5, "major-faults": 6, "alignment-faults": 7,
             "emulation-faults": 8, "dummy": 9}

_NR_PERF_EVENT_OPEN = {"x86_64": 298, "aarch64": 241}.get(os.uname().machine, 298)
_ATTR_SIZE = 128
# bit positions in perf_event_attr's flag word
_DISABLED, _INHERIT, _EXCLUDE_USER, _EXCLUDE_KERNEL, _EXCLUDE_HV = 0, 1, 4, 5, 6
_ENABLE_ON_EXEC = 12

_libc = ctypes.CDLL(None, use_errno=True)


def open_counter(ev_type: int, config: int, *, pid: int = -1, cpu: int = 0,
                 exclude_user: bool = False, exclude_kernel: bool = False,
                 inherit: bool = False, disabled: bool = False,
                 enable_on_exec: bool = False) -> int:
    """Open a counting (not sampling) perf event; returns its fd or raises OSError.
    `enable_on_exec` (with `disabled`) starts counting when `pid` execs, as perf
    stat does for a command it forks."""
    flags = (1 << _EXCLUDE_HV)
    flags |= (1 << _ENABLE_ON_EXEC) if enable_on_exec else 0
    flags |= (1 << _DISABLED) if disabled else 0
    flags |= (1 << _INHERIT) if inherit else 0
    flags |= (1 << _EXCLUDE_USER) if exclude_user else 0
    flags |= (1 << _EXCLUDE_KERNEL) if exclude_kernel else 0
    attr = bytearray(_ATTR_SIZE)
    struct.pack_into("=IIQQQQQ", attr, 0, ev_type, _ATTR_SIZE, config, 0, 0, 0, flags)
    buf = (ctypes.c_char * _ATTR_SIZE).from_buffer(attr)
    fd = _libc.syscall(_NR_PERF_EVENT_OPEN, buf, pid, cpu, -1, 0)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def read_counter(fd: int) -> int:
    return struct.unpack("=Q", os.read(fd, 8))[0]


def hardware_supported() -> tuple[bool, str]:
    try:
        fd = open_counter(PERF_TYPE_HARDWARE, HW_EVENTS["cycles"], pid=0, cpu=-1)
    except OSError as exc:
        return False, f"perf_event_open(cycles) fails: {exc.strerror}"
    os.close(fd)
    return True, "perf_event_open(cycles) succeeds"


PERF_EVENT_IOC_SET_FILTER = 0x40082406   # _IOW('$', 6, char *), linux/perf_event.h


def set_filter(fd: int, text: str) -> None:
    """Attach an ftrace filter to a tracepoint counter; OSError (EINVAL) when
    the kernel's filter parser refuses it."""
    if _libc.ioctl(fd, PERF_EVENT_IOC_SET_FILTER, ctypes.c_char_p(text.encode())) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))

"""System call names, numbers and argument layouts on this machine.

Names come from the committed table (see syscall_table_x86_64.py); argument
names and types come from tracefs' syscalls:sys_enter_* formats, so they are
the running kernel's own.
"""
from __future__ import annotations

import errno
import os
from functools import lru_cache

from ..errors import NotFoundError, NotSupportedError, UsageError

_MACHINE = os.uname().machine


@lru_cache(maxsize=1)
def table() -> dict[int, str]:
    if _MACHINE != "x86_64":
        raise NotSupportedError(f"no system call table for {_MACHINE} yet (only x86_64)")
    from .syscall_table_x86_64 import NAMES
    return dict(NAMES)


@lru_cache(maxsize=1)
def numbers() -> dict[str, int]:
    return {name: nr for nr, name in table().items()}


def name(nr: int) -> str:
    """The name of system call `nr`; unknown numbers stay visible as `syscall_NR`."""
    return table().get(nr, f"syscall_{nr}")


def number(syscall: str) -> int:
    nr = numbers().get(syscall)
    if nr is None:
        raise NotFoundError(f"unknown system call '{syscall}' "
                            "(`pytracekit syscount --list` lists them)")
    return nr


def event_name(syscall: str) -> str:
    """The tracefs event suffix for a syscall (sys_enter_<this>)."""
    from .syscall_table_x86_64 import EVENT_ALIASES
    return EVENT_ALIASES.get(syscall, syscall)


def errno_name(code: int) -> str:
    return errno.errorcode.get(code, f"E{code}")


def errno_number(text: str) -> int:
    """'ENOENT' or '2' -> 2."""
    if text.isdigit() and int(text) > 0:
        return int(text)
    value = getattr(errno, text.upper(), None)
    if not isinstance(value, int) or not text.upper().startswith("E"):
        raise UsageError(f"unknown errno '{text}': give a name like ENOENT or a number")
    return value


@lru_cache(maxsize=None)
def arguments(nr: int) -> tuple | None:
    """The (name, ctype) of each argument of syscall `nr`, from tracefs (() for a
    call that takes none, such as getpid); None when tracefs does not describe it."""
    from . import tracefs
    syscall = table().get(nr)
    if syscall is None:
        return None
    try:
        tp = tracefs.tracepoint("syscalls", f"sys_enter_{event_name(syscall)}")
    except NotFoundError:
        return None
    return tuple((f.name, f.ctype) for f in tp.fields if f.name != "__syscall_nr")

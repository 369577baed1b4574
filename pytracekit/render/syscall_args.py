"""Turning raw system call arguments into perf-trace-like text. Pure.

Argument names and C types come from tracefs (syscalls.arguments); strings
were read from user memory by bpf/systrace.bpf.c for the arguments
`string_mask` marks. Flags are spelled from this platform's constants (os,
mmap) where a decoder exists.
"""
from __future__ import annotations

import errno
import mmap
import os

from ..kernel import syscalls

# Arguments of type char * that hold NUL-terminated names, worth reading.
STRING_ARGS = {"filename", "pathname", "path", "oldname", "newname", "oldpath", "newpath",
               "specialfile", "dev_name", "dir_name", "type", "library", "name"}
AT_FDCWD = -100
_OPEN_FLAGS = sorted(((getattr(os, n), n[2:]) for n in dir(os) if n.startswith("O_") and
                      n not in ("O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE", "O_RSYNC",
                                "O_FSYNC", "O_NDELAY", "O_SYNC", "O_TMPFILE")
                      and getattr(os, n)))
_PROT = [(mmap.PROT_READ, "READ"), (mmap.PROT_WRITE, "WRITE"), (mmap.PROT_EXEC, "EXEC")]
_MAP = [(mmap.MAP_SHARED, "SHARED"), (mmap.MAP_PRIVATE, "PRIVATE"), (0x10, "FIXED"),
        (mmap.MAP_ANONYMOUS, "ANONYMOUS"), (0x4000, "NORESERVE"), (0x8000, "POPULATE"),
        (0x20000, "STACK"), (0x100000, "FIXED_NOREPLACE"), (0x800, "DENYWRITE")]
_POINTER_RESULT = {"mmap", "brk", "mremap", "shmat"}


def string_mask(nr: int) -> int:
    mask = 0
    for i, (name, ctype) in enumerate(syscalls.arguments(nr) or ()):
        if name in STRING_ARGS and ctype.replace("const ", "").strip() == "char *":
            mask |= 1 << i
    return mask


def _bits(value: int, table: list[tuple[int, str]]) -> list[str]:
    names, rest = [], value
    for bit, name in table:
        if bit and rest & bit == bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(hex(rest))
    return names


def open_flags(value: int) -> str:
    mode = {0: "RDONLY", 1: "WRONLY", 2: "RDWR"}.get(value & 3, "ACCMODE3")
    return "|".join([mode] + _bits(value & ~3, _OPEN_FLAGS))


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def one_argument(syscall: str, name: str, ctype: str, value: int, text: str | None) -> str:
    if "*" in ctype:
        if text is not None:
            return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return "NULL" if value == 0 else hex(value)
    if name in ("dfd", "olddfd", "newdfd") and _signed(value, 32) == AT_FDCWD:
        return "CWD"
    if name == "flags" and syscall in ("open", "openat", "creat"):
        return open_flags(value)
    if name == "prot" and syscall in ("mmap", "mprotect", "pkey_mprotect"):
        return "|".join(_bits(value, _PROT)) or "NONE"
    if name == "flags" and syscall == "mmap":
        return "|".join(_bits(value, _MAP))
    if name in ("addr", "start", "brk", "new_addr", "old_addr"):
        return hex(value)
    if name in ("fd", "oldfd", "newfd", "dfd"):
        return str(_signed(value, 32))
    if name == "mode" or ctype == "umode_t":
        return f"0{value:o}" if value else "0"
    if ctype in ("int", "pid_t", "key_serial_t", "clockid_t", "timer_t", "mqd_t"):
        return str(_signed(value, 32))
    if ctype in ("long", "loff_t", "off_t", "ssize_t", "__s64", "time_t"):
        return str(_signed(value, 64))
    if "flags" in name:
        return hex(value)
    return str(value)


def arguments_text(nr: int, values: list[int], strings: list[str]) -> str:
    syscall = syscalls.name(nr)
    fields = syscalls.arguments(nr)
    if fields is None:   # a call tracefs does not describe: show what the registers held
        return ", ".join(hex(v) for v in values[:6])
    mask, texts, parts = string_mask(nr), iter(strings), []
    for i, (name, ctype) in enumerate(fields):
        text = next(texts, None) if mask & (1 << i) else None
        parts.append(f"{name}: {one_argument(syscall, name, ctype, values[i], text)}")
    return ", ".join(parts)


def result_text(syscall: str, ret: int, returned: bool = True) -> str:
    if not returned:
        return "?"
    if -4096 < ret < 0:
        code = -ret
        return f"-1 {errno.errorcode.get(code, f'E{code}')} ({os.strerror(code)})"
    if syscall in _POINTER_RESULT:
        return hex(ret & (2 ** 64 - 1))
    return str(ret)

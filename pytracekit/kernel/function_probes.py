"""Kernel functions on a kernel that may lack kprobes and fentry: the
tracepoints that cover a function (its system call's first), and the error
that names what is missing and what would work instead."""
from __future__ import annotations

from ..errors import NotSupportedError

_SYSCALL_PREFIXES = ("__x64_sys_", "__ia32_sys_", "__arm64_sys_", "__se_sys_", "__do_sys_",
                     "__sys_", "ksys_", "do_sys_", "sys_", "vfs_", "do_")
# Kernel functions whose system call has another name.
_SYSCALL_ALIASES = {"open": ("openat", "open"), "do_sys_open": ("openat", "open"),
                    "filp_open": ("openat",), "readv": ("readv",), "fork": ("clone", "fork"),
                    "execve": ("execve",), "exec_binprm": ("execve",), "unlink": ("unlinkat",),
                    "mkdir": ("mkdirat", "mkdir"), "rename": ("renameat2", "rename")}


def suggest_tracepoints_for_function(function: str, limit: int = 4) -> list[str]:
    """Tracepoints that cover a kernel function: its system call's enter/exit
    events first (vfs_read, ksys_read, __x64_sys_read -> syscalls:sys_enter_read),
    then tracepoints sharing words with its name."""
    from . import tracefs
    known = set(tracefs.list_tracepoints())
    cores = []
    if function in _SYSCALL_ALIASES:
        cores += _SYSCALL_ALIASES[function]
    for prefix in _SYSCALL_PREFIXES:
        if function.startswith(prefix):
            core = function[len(prefix):]
            cores += list(_SYSCALL_ALIASES.get(core, (core,)))
            break
    else:
        cores.append(function)
    out: list[str] = []
    for core in cores:
        for phase in ("enter", "exit"):
            name = f"syscalls:sys_{phase}_{core}"
            if name in known and name not in out:
                out.append(name)
    if not out:
        out = tracefs.suggest_tracepoints(function, limit)
    return out[:limit]


def kernel_probe_unsupported(function: str) -> NotSupportedError:
    from . import features
    _ok, kprobes_why = features.kprobes_available()
    _ok, fentry_why = features.fentry_available()
    hints = suggest_tracepoints_for_function(function)
    hint = (f"; tracepoints that cover it: {', '.join('t:' + h for h in hints)}" if hints
            else "; use a tracepoint instead (`pytracekit list` lists them)")
    return NotSupportedError(f"cannot probe kernel function {function}: this kernel has no "
                             f"kprobes ({kprobes_why}) and no fentry ({fentry_why}){hint}")

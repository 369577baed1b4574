"""Who a run follows (-a, -p PID or `-- COMMAND` and its children), in BPF.

Programs that follow a target #include "ptk_follow.h" and are loaded through
`load()`; the stack tools' ptk_stacks.h includes it too (modes 3 and 4).
"""
from __future__ import annotations

from typing import Any, Mapping

from ..kernel import syscalls
from .loader import Program
from .runner import Target

ALL, PID, COMMAND, PIDS, TIDS = 0, 1, 2, 3, 4


def defines(target: Target) -> dict[str, int]:
    return mode_defines(target.pid, command=bool(target.command))


def mode_defines(pid: int, *, command: bool) -> dict[str, int]:
    """`pid` 0: everyone; with `command`, a held command's pid (followed from
    its exec on, with its children); else one process (-p)."""
    exec_nrs = {"FOLLOW_NR_EXECVE": syscalls.number("execve"),
                "FOLLOW_NR_EXECVEAT": syscalls.number("execveat")}
    if command and pid:
        return {"FOLLOW_MODE": COMMAND, "FOLLOW_ROOT": pid, **exec_nrs}
    if pid:
        return {"FOLLOW_MODE": PID, "FOLLOW_PID": pid, **exec_nrs}
    return {"FOLLOW_MODE": ALL, **exec_nrs}


def load(name: str, target: Target, defines_: Mapping[str, Any] | None = None,
         replace: Mapping[str, str] | None = None) -> Program:
    return load_with(name, defines(target), defines_, replace)


def load_with(name: str, follow_defines: Mapping[str, Any],
              defines_: Mapping[str, Any] | None = None,
              replace: Mapping[str, str] | None = None) -> Program:
    """load() for a tool that has the pid, not the Target (top's start())."""
    return Program.from_file(name, defines={**follow_defines, **(defines_ or {})},
                             replace=replace)


def set_root(prog: Program, pid: int) -> None:
    """Follow this command (held before exec) from its exec on: a program
    loaded for another command's run, reused (stat -r)."""
    prog.set_run_time_id("FOLLOW_ROOT", pid)

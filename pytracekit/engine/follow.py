"""Who a run follows (-a, -p PID or `-- COMMAND` and its children), in BPF.

Programs that follow a target put the slot `/* PTK_SLOT PTK_FOLLOW */` where
bpf/follow.inc.c belongs and are loaded through `load()`.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..kernel import syscalls
from .loader import BPF_DIR, Program, code_slot
from .runner import Target

TOKEN = code_slot("PTK_FOLLOW")
ALL, PID, COMMAND = 0, 1, 2


def defines(target: Target) -> dict[str, int]:
    exec_nrs = {"FOLLOW_NR_EXECVE": syscalls.number("execve"),
                "FOLLOW_NR_EXECVEAT": syscalls.number("execveat")}
    if target.command:
        return {"FOLLOW_MODE": COMMAND, "FOLLOW_ROOT": target.pid, **exec_nrs}
    if target.pid:
        return {"FOLLOW_MODE": PID, "FOLLOW_PID": target.pid, **exec_nrs}
    return {"FOLLOW_MODE": ALL, **exec_nrs}


def load(name: str, target: Target, defines_: Mapping[str, Any] | None = None,
         replace: Mapping[str, str] | None = None) -> Program:
    code = (BPF_DIR / "follow.inc.c").read_text()
    return Program.from_file(name, defines={**defines(target), **(defines_ or {})},
                             replace={TOKEN: code, **(replace or {})})


def set_root(prog: Program, pid: int) -> None:
    """Follow this command (held before exec) from its exec on: a program
    loaded for another command's run, reused (stat -r)."""
    prog.set_run_time_id("FOLLOW_ROOT", pid)

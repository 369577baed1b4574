"""Who a run follows (-a, -p PID or `-- COMMAND` and its children), in BPF.

Programs that follow a target put the comment `/*PTK_FOLLOW*/` where
bpf/follow.inc.c belongs and are loaded through `load()`.
"""
from __future__ import annotations

import os
import select
import time
from typing import Any, Mapping

from . import syscalls
from .loader import BPF_DIR, Program
from .runner import Target

TOKEN = "/*PTK_FOLLOW*/"
ALL, PID, COMMAND = 0, 1, 2


def defines(target: Target) -> dict[str, int]:
    exec_nrs = {"FOLLOW_NR_EXECVE": syscalls.number("execve"),
                "FOLLOW_NR_EXECVEAT": syscalls.number("execveat")}
    if target.command:
        return {"FOLLOW_MODE": COMMAND, **exec_nrs}
    if target.pid:
        return {"FOLLOW_MODE": PID, "FOLLOW_PID": target.pid, **exec_nrs}
    return {"FOLLOW_MODE": ALL, **exec_nrs}


def load(name: str, target: Target, defines_: Mapping[str, Any] | None = None,
         replace: Mapping[str, str] | None = None) -> Program:
    code = (BPF_DIR / "follow.inc.c").read_text()
    prog = Program.from_file(name, defines={**defines(target), **(defines_ or {})},
                             replace={TOKEN: code, **(replace or {})})
    if target.command:
        set_root(prog, target.pid)
    return prog


def set_root(prog: Program, pid: int) -> None:
    """Follow this command (held before exec) from its exec on."""
    table = prog["follow_root"]
    table[table.Key(0)] = table.Leaf(pid)


class TargetExited(KeyboardInterrupt):
    """Ends run_until_done (which treats it like Ctrl-C) when a -p process exits."""


class ExitWatch:
    """A `poll` for run_until_done that wakes the moment `pid` exits (a pidfd),
    notes when, and for a -p process (not our child) ends the run.

    `then(ms)` is the tool's own poll (e.g. consuming a ring buffer)."""

    def __init__(self, pid: int, *, stop: bool, then: Any = None) -> None:
        self.stop, self.then, self.pid = stop, then, pid
        self.exited_at: float | None = None
        try:
            self.fd = os.pidfd_open(pid) if pid else -1
        except (OSError, AttributeError):
            self.fd = -1

    def __call__(self, timeout_ms: int) -> None:
        if self.then is not None:
            self.then(timeout_ms)
            timeout_ms = 0
        if self.fd < 0:
            time.sleep(timeout_ms / 1000)
            return
        if self.exited_at is None:
            ready, _, _ = select.select([self.fd], [], [], timeout_ms / 1000)
            if ready:
                self.exited_at = time.monotonic()
        else:
            time.sleep(timeout_ms / 1000)
        if self.exited_at is not None and self.stop:
            raise TargetExited()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


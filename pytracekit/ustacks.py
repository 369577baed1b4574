"""User stacks of the event tools (stackcount, trace -U, faults, memleak,
mutexstat): the user half of bpf/ptk_ustack.h.

`--unwind dwarf` (the default, as in profile) compiles the in-kernel
unwinder in (CFI_UNWIND); `EventUnwinding` loads the target into it before
the probes fire (-p), has a held command stopped at its entry until its
mappings are loaded (-- COMMAND) and loads processes as the BPF side announces
them (system-wide); symbols.Symbolizer.unwound_stack names a stack stored
under its hash. A process not loaded yet, and `--unwind fp`, keep the
frame-pointer walk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import click

MODES = ("dwarf", "fp")


def unwind_option() -> Callable[[Any], Any]:
    """--unwind dwarf|fp, as profile has it."""
    return click.option(
        "--unwind", type=click.Choice(MODES), default="dwarf", show_default=True,
        help="User stacks: dwarf unwinds in the kernel with each binary's CFI (.eh_frame; "
             "works without frame pointers), fp follows frame pointers.")


def defines(unwind: str, *, user: bool, storage: int, command_pid: int = 0) -> dict[str, Any]:
    """Compile-time parameters of ptk_unwind.h/ptk_ustack.h: `storage` distinct
    unwound stacks; `command_pid`: a held -- COMMAND (stopped at its entry)."""
    cfi = unwind == "dwarf" and user
    out: dict[str, Any] = {"CFI_UNWIND": int(cfi)}
    if cfi:
        out["USTACKS_SIZE"] = storage
        if command_pid:
            out["EXEC_PID"] = command_pid
    return out


@dataclass
class EventUnwinding:
    """The unwinder of one event tool's program; `poll` services its rings
    (announced pids, misses, a command stopped at its entry), `close` never
    leaves a command stopped."""

    unwinder: Any
    poll_rings: Callable[[int], None]

    @classmethod
    def setup(cls, prog: Any, symbolizer: Any, *, pids: list[int] = (),
              command: tuple[str, ...] = (), command_pid: int = 0) -> "EventUnwinding | None":
        """Before the probes are attached; None when the program has no
        unwinder (--unwind fp, kernel stacks only). `symbolizer`: the
        symbols.Symbolizer that names the unwound stacks."""
        from .stacks import watch_new_pids
        from .unwinder import setup_unwinder
        unwinder = setup_unwinder(prog, symbolizer, command=tuple(command),
                                  command_pid=command_pid,
                                  pids=[p for p in pids if p] if not command else [])
        if unwinder is None:
            return None
        try:
            poll = watch_new_pids(prog, symbolizer, unwinder=unwinder)
        except BaseException:
            unwinder.release_stopped()
            raise
        return cls(unwinder, poll)

    def poll(self, timeout_ms: int) -> None:
        self.poll_rings(timeout_ms)

    def close(self) -> None:
        self.unwinder.release_stopped()
        from . import settings
        if settings.current().verbose:   # what was loaded, as profile says it
            import sys
            print(self.unwinder.summary(), file=sys.stderr)

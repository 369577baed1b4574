"""User stacks of the event tools (stackcount, trace -U, faults, memleak,
mutexstat): the user half of bpf/ptk_ustack.h.

`--unwind dwarf` (the default, as in profile) compiles the in-kernel
unwinder in (CFI_UNWIND); `EventUnwinding` loads the target into it before
the probes fire (-p), has a held command stopped at its entry until its
mappings are loaded (-- COMMAND), loads processes as the BPF side announces
them (system-wide), and names a stack stored under a hash. A process not
loaded yet, and `--unwind fp`, keep the frame-pointer walk.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import click

from .model import Frame

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


def poll_with(unwinding: EventUnwinding | None,
              wait: Callable[[int], None]) -> Callable[[int], None]:
    """A run_until_done poll: the unwinder's rings, then the tool's own wait
    (a sleep, its event ring) for the rest of the timeout."""
    if unwinding is None:
        return wait

    def poll(timeout_ms: int) -> None:
        unwinding.poll(0)
        wait(timeout_ms)
        unwinding.poll(0)
    return poll


def unwound_frames(symbolizer: Any, stack_hash: int, pid: int) -> list[Frame]:
    """A stack of the unwinder (leaf first), named without the process."""
    return symbolizer.unwound_stack(stack_hash, pid) if stack_hash else []

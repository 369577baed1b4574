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
        from .stack_maps import watch_new_pids
        from ..symbolize.unwinder import setup_unwinder
        unwinder = setup_unwinder(prog, symbolizer, command=tuple(command),
                                  command_pid=command_pid,
                                  pids=[p for p in pids if p] if not command else [])
        if unwinder is None:
            return None
        try:
            poll = watch_new_pids(prog, symbolizer, unwinder=unwinder)
        except BaseException:
            unwinder.close()
            raise
        return cls(unwinder, poll)

    def poll(self, timeout_ms: int) -> None:
        self.poll_rings(timeout_ms)

    def close(self) -> None:
        self.unwinder.close()
        from ..engine import settings
        if settings.current().verbose:   # what was loaded, as profile says it
            import sys
            print(self.unwinder.summary(), file=sys.stderr)


class UnwindingToolMixin:
    """poll/close for a periodic.BpfTool with an `unwinding` attribute (an
    EventUnwinding, or None for --unwind fp): put before BpfTool in the bases."""

    unwinding: "EventUnwinding | None"

    def poll(self, timeout_ms: int) -> None:
        if self.unwinding is None:
            super().poll(timeout_ms)   # type: ignore[misc]
            return
        self.unwinding.poll(timeout_ms)   # a held command may wait at its entry
        self.warm()   # type: ignore[attr-defined]

    def close(self) -> None:
        if self.unwinding is not None:
            self.unwinding.close()
        super().close()   # type: ignore[misc]


class EventUserStacks:
    """The user stacks of a streaming tool's events (funcslower -U, capable
    -U): a ptk_ustack.h id and hash per event, named as the event is printed
    (files noted while its process lives, by build id once it exited), and the
    program's unwinder, if any (`setup` before the probes fire)."""

    def __init__(self, files: Any = ()) -> None:
        from ..symbolize.buildid import BuildIdSymbolizer
        self.symbols = BuildIdSymbolizer()
        self.symbols.add_files(files)
        self.unwinding: EventUnwinding | None = None
        self._pids_seen: set[int] = set()

    def setup(self, prog: Any, *, pid: int = 0, command: tuple[str, ...] = (),
              command_pid: int = 0) -> None:
        import os
        import shutil
        self.unwinding = EventUnwinding.setup(prog, self.symbols.symbolizer, pids=[pid],
                                              command=command, command_pid=command_pid)
        if command and shutil.which(command[0]):   # its frames, even once it has exited
            self.symbols.add_files([os.path.realpath(shutil.which(command[0]))])

    def names(self, stack_map: Any, pid: int, stack_id: int, stack_hash: int) -> list[str]:
        """Frame names, leaf first."""
        from ..symbolize.buildid import mapped_files
        if pid not in self._pids_seen:   # its files, while it may still be alive
            self._pids_seen.add(pid)
            self.symbols.add_files(mapped_files(pid))
        return [f.name for f in self.symbols.user_stack(stack_map, stack_id, stack_hash, pid)]

    @property
    def unknown_frames(self) -> int:
        return self.symbols.unknown_frames

    def poll(self) -> None:
        """Between reads of the event ring: a held command may wait at its entry."""
        if self.unwinding is not None:
            self.unwinding.poll(0)

    def close(self) -> None:
        if self.unwinding is not None:
            self.unwinding.close()

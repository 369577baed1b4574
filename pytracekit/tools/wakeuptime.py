"""wakeuptime: time threads were blocked, summed per waker stack (BCC's wakeuptime).

Stacks read root first: the waker's name, its user and kernel frames at the
wakeup, then the name of the thread it woke. Values are microseconds.
"""
from __future__ import annotations

import click

from ..cli import options
from ..model import Frame, Sample, StackProfile
from .offcputime import BlockedSession, run_waker_tool, stack_tool_options, start_blocked
from ..textsafe import cstr

DRY_RUN_ARGS = ["1"]


class WakeupSession(BlockedSession):
    def key_samples(self) -> list[Sample]:
        samples = []
        for key, value in self.prog["counts"].items():
            w = key.waker
            comm = cstr(w.comm)
            target = cstr(key.target_comm)
            path = [Frame(comm, "process")]
            path += self.key_path(w, key.waker_py_stack_id, value.value, missing=True,
                                  **self.read_options)
            path.append(Frame(target, "process"))
            samples.append(Sample(tuple(path), value.value, pid=w.pid, tid=w.tid, comm=comm))
        return samples


def wakeup_text(profile: StackProfile, *, top: int | None = None) -> str:
    """BCC's layout: target, the waker's frames leaf first, waker, value."""
    ordered = sorted(profile.samples, key=lambda s: (s.value, s.comm))
    if top is not None:
        ordered = ordered[-top:] if top else []
    out = []
    for s in ordered:
        out.append(f"    {'target:':<16} {s.stack[-1].name}")
        out += [f"    {f.name}" for f in reversed(s.stack[1:-1])]
        out.append(f"    {'waker:':<16} {s.comm} ({s.pid})")
        out.append(f"        {s.value}\n")
    return "\n".join(out)


def start(**options) -> WakeupSession:
    """wakeuptime's core: `read()` gives microseconds per stack pair. Takes
    start_blocked's options (unwind="dwarf", python=False as in profile.start)."""
    return start_blocked("wakeuptime", WakeupSession, "wakeup", **options)


@click.command("wakeuptime", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@stack_tool_options
def command(ctx: click.Context, **opts) -> None:
    """Summarize blocked time by the stack of the thread that woke it, in microseconds.

    -p/-t select the blocked threads. -u/-k are accepted for symmetry with
    offcputime and refused: BCC's wakeuptime has no such filter.

    \b
    Examples:
      pytracekit wakeuptime 5            # everything for 5 seconds
      pytracekit wakeuptime -p 185 -f    # who wakes process 185, folded
    """
    run_waker_tool(ctx, "wakeuptime", "blocked time (us)", start, wakeup_text, **opts)

"""offwaketime: off-CPU time per blocked stack and the stack that woke it
(BCC's offwaketime).

Stacks read root first as BCC folds them: the blocked thread's name, user and
kernel frames, `--`, then the waker's kernel and user frames leaf first and
the waker's name, so a flame graph shows the waker on top of the sleeper.
Values are microseconds.
"""
from __future__ import annotations

import click

from ..cli import options
from ..model import Frame, Sample, StackProfile
from .offcputime import BlockedSession, run_waker_tool, stack_tool_options, start_blocked
from ..textsafe import cstr

DRY_RUN_ARGS = ["1"]
WAKER_DELIMITER = Frame("--", "marker")


class OffWakeSession(BlockedSession):
    def key_samples(self) -> list[Sample]:
        opts = self.read_options
        samples = []
        for key, value in self.prog["counts"].items():
            t, w = key.target, key.waker
            comm = cstr(t.comm)
            path = [Frame(comm, "process")]
            path += self.key_path(t, key.target_py_stack_id, value.value, missing=True, **opts)
            path.append(WAKER_DELIMITER)
            waker = self.key_path(w, key.waker_py_stack_id, value.value, **opts)
            path += reversed(waker)
            path.append(Frame(cstr(w.comm) or "[unknown waker]", "process"))
            samples.append(Sample(tuple(path), value.value, pid=t.pid, tid=t.tid, comm=comm))
        return samples


def offwake_text(profile: StackProfile, *, top: int | None = None) -> str:
    """BCC's layout: waker name and stack, `--`, the blocked stack, target name, value."""
    ordered = sorted(profile.samples, key=lambda s: (s.value, s.comm))
    if top is not None:
        ordered = ordered[-top:] if top else []
    out = []
    for s in ordered:
        cut = s.stack.index(WAKER_DELIMITER)
        out.append(f"    {'waker:':<16} {s.stack[-1].name}")
        out += [f"    {f.name}" for f in s.stack[cut + 1:-1]]
        out.append(f"    {'--':<16} --")
        out += [f"    {f.name}" for f in reversed(s.stack[1:cut])]
        out.append(f"    {'target:':<16} {s.comm} ({s.pid})")
        out.append(f"        {s.value}\n")
    return "\n".join(out)


def start(**options) -> OffWakeSession:
    """offwaketime's core: `read()` gives microseconds per stack pair. Takes
    start_blocked's options (unwind="dwarf", python=False as in profile.start)."""
    return start_blocked("offwaketime", OffWakeSession, "off_cpu", **options)


@click.command("offwaketime", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@stack_tool_options
def command(ctx: click.Context, **opts) -> None:
    """Summarize blocked time by blocked stack and waker stack, in microseconds.

    -p/-t select the blocked threads.

    \b
    Examples:
      pytracekit offwaketime 5             # everything for 5 seconds
      pytracekit offwaketime -f -p 185     # process 185, folded (flamegraph.pl input)
    """
    run_waker_tool(ctx, "offwaketime", "off-CPU time (us) and wakers", start, offwake_text, **opts)

"""wakeuptime: time threads were blocked, summed per waker stack (BCC's wakeuptime).

Stacks read root first: the waker's name, its user and kernel frames at the
wakeup, then the name of the thread it woke. Values are microseconds.
"""
from __future__ import annotations

import click

from .. import options, stacktools
from ..errors import UsageError
from ..model import Frame, Sample, StackProfile
from ..stacks import stack_path
from .offcputime import run_stack_tool, stack_tool_options

DRY_RUN_ARGS = ["1"]


class WakeupSession(stacktools.StackSession):
    def samples(self) -> StackProfile:
        stack_map, opts = self.prog["stack_traces"], self.read_options
        samples = []
        for key, value in self.prog["counts"].items():
            w = key.waker
            comm = w.comm.decode(errors="replace")
            target = key.target_comm.decode(errors="replace")
            path = [Frame(comm, "process")]
            path += stack_path(self.symbolizer, stack_map, pid=w.pid,
                               user_stack_id=w.user_stack_id, kernel_stack_id=w.kernel_stack_id,
                               missing=True, **opts)
            path.append(Frame(target, "process"))
            samples.append(Sample(tuple(path), value.value, pid=w.pid, tid=w.tid, comm=comm))
        loss = self.loss()
        loss.unknown_frames += self.symbolizer.unknown_frames
        return StackProfile(samples=samples, loss=loss)


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


def start(*, pids=None, tids=None, command=(), user_only=False, kernel_only=False, min_us=1,
          max_us=None, stack_storage_size=16384, delimited=False) -> WakeupSession:
    if user_only and kernel_only:
        raise UsageError("-U and -K exclude each other: give at most one")
    if max_us is not None and max_us < min_us:
        raise UsageError(f"-M {max_us} is below -m {min_us}: the range would be empty")
    target, selected, defines = stacktools.select_targets(list(pids or []), list(tids or []),
                                                          command)
    defines.update(MIN_BLOCK_NS=f"{min_us * 1000}ULL", USER_STACKS=not kernel_only,
                   KERNEL_STACKS=not user_only, STACK_STORAGE_SIZE=stack_storage_size)
    if max_us is not None:
        defines["MAX_BLOCK_NS"] = f"{max_us * 1000}ULL"
    prog, symbolizer, poll = stacktools.launch("wakeuptime", defines, target, selected)
    return WakeupSession(prog, target, symbolizer, poll,
                         dict(user=not kernel_only, kernel=not user_only, delimit=delimited),
                         {"tool": "wakeuptime"}, value_type="wakeup", unit="microseconds",
                         divisor=1000)


@click.command("wakeuptime", cls=stacktools.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@stack_tool_options
def command(ctx: click.Context, duration_arg, pid_list, tid_list, user_threads_only,
            kernel_threads_only, user_only, kernel_only, delimited, folded, stack_storage_size,
            min_us, max_us, top, duration, as_json, output, fmt) -> None:
    """Summarize blocked time by the stack of the thread that woke it, in microseconds.

    -p/-t select the blocked threads. -u/-k are accepted for symmetry with
    offcputime and refused: BCC's wakeuptime has no such filter.

    \b
    Examples:
      pytracekit wakeuptime 5            # everything for 5 seconds
      pytracekit wakeuptime -p 185 -f    # who wakes process 185, folded
    """
    if user_threads_only or kernel_threads_only:
        raise UsageError("wakeuptime does not filter by thread kind (-u/-k): use offcputime")
    duration = stacktools.pick_duration(duration_arg, duration)
    fmt = stacktools.format_for(output, fmt)
    command = stacktools.command_of(ctx)
    pids, tids = stacktools.id_list(pid_list, "pid"), stacktools.id_list(tid_list, "tid")
    session = start(pids=pids, tids=tids, command=command, user_only=user_only,
                    kernel_only=kernel_only, min_us=min_us, max_us=max_us,
                    stack_storage_size=stack_storage_size, delimited=delimited)
    run_stack_tool("wakeuptime", session, "blocked time (us)", pids, tids, command, user_only,
                   kernel_only, duration, folded=folded, as_json=as_json, top=top,
                   output=output, fmt=fmt, text=wakeup_text)

"""offwaketime: off-CPU time per blocked stack and the stack that woke it
(BCC's offwaketime).

Stacks read root first as BCC folds them: the blocked thread's name, user and
kernel frames, `--`, then the waker's kernel and user frames leaf first and
the waker's name, so a flame graph shows the waker on top of the sleeper.
Values are microseconds.
"""
from __future__ import annotations

import click

from .. import options, stacktools
from ..errors import UsageError
from ..model import Frame, Sample, StackProfile
from ..stacks import stack_path
from .offcputime import run_stack_tool, stack_tool_options

DRY_RUN_ARGS = ["1"]
WAKER_DELIMITER = Frame("--", "marker")


class OffWakeSession(stacktools.StackSession):
    def samples(self) -> StackProfile:
        stack_map, opts = self.prog["stack_traces"], self.read_options
        samples = []
        for key, value in self.prog["counts"].items():
            t, w = key.target, key.waker
            comm = t.comm.decode(errors="replace")
            path = [Frame(comm, "process")]
            path += stack_path(self.symbolizer, stack_map, pid=t.pid,
                               user_stack_id=t.user_stack_id, kernel_stack_id=t.kernel_stack_id,
                               missing=True, **opts)
            path.append(WAKER_DELIMITER)
            waker = stack_path(self.symbolizer, stack_map, pid=w.pid,
                               user_stack_id=w.user_stack_id, kernel_stack_id=w.kernel_stack_id,
                               **opts)
            path += reversed(waker)
            path.append(Frame(w.comm.decode(errors="replace") or "[unknown waker]", "process"))
            samples.append(Sample(tuple(path), value.value, pid=t.pid, tid=t.tid, comm=comm))
        loss = self.loss()
        loss.unknown_frames += self.symbolizer.unknown_frames
        return StackProfile(samples=samples, loss=loss)


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


def start(*, pids=None, tids=None, command=(), user_only=False, kernel_only=False, min_us=1,
          max_us=None, stack_storage_size=16384, delimited=False) -> OffWakeSession:
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
    prog, symbolizer, poll = stacktools.launch("offwaketime", defines, target, selected)
    return OffWakeSession(prog, target, symbolizer, poll,
                          dict(user=not kernel_only, kernel=not user_only, delimit=delimited),
                          {"tool": "offwaketime"}, value_type="off_cpu", unit="microseconds",
                          divisor=1000)


@click.command("offwaketime", cls=stacktools.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@stack_tool_options
def command(ctx: click.Context, duration_arg, pid_list, tid_list, user_threads_only,
            kernel_threads_only, user_only, kernel_only, delimited, folded, stack_storage_size,
            min_us, max_us, top, duration, as_json, output, fmt) -> None:
    """Summarize blocked time by blocked stack and waker stack, in microseconds.

    -p/-t select the blocked threads.

    \b
    Examples:
      pytracekit offwaketime 5             # everything for 5 seconds
      pytracekit offwaketime -f -p 185     # process 185, folded (flamegraph.pl input)
    """
    if user_threads_only or kernel_threads_only:
        raise UsageError("offwaketime does not filter by thread kind (-u/-k): use offcputime")
    duration = stacktools.pick_duration(duration_arg, duration)
    fmt = stacktools.format_for(output, fmt)
    command = stacktools.command_of(ctx)
    pids, tids = stacktools.id_list(pid_list, "pid"), stacktools.id_list(tid_list, "tid")
    session = start(pids=pids, tids=tids, command=command, user_only=user_only,
                    kernel_only=kernel_only, min_us=min_us, max_us=max_us,
                    stack_storage_size=stack_storage_size, delimited=delimited)
    run_stack_tool("offwaketime", session, "off-CPU time (us) and wakers", pids, tids, command,
                   user_only, kernel_only, duration, folded=folded, as_json=as_json, top=top,
                   output=output, fmt=fmt, text=offwake_text)

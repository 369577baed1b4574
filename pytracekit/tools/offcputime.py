"""offcputime: where threads block, and for how long (BCC's offcputime).

The raw tracepoint sched_switch takes the stacks of the thread leaving the
CPU and, when that thread is switched back in, adds the time it was away to
them, in the kernel. Values are microseconds, as in BCC.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..collect import samplelog
from ..families import stack_profilers as stacktools
from ..errors import UsageError
from ..model import Frame, Sample, StackProfile
from ..collect.stack_maps import stack_path
from ..families import python_stacks as pysampling
from ..families import sched
from ..engine.runner import run_until_done

DRY_RUN_ARGS = ["1"]


@dataclass
class BlockedSession(stacktools.StackSession):
    """offwaketime's and wakeuptime's session: keys holding several stacks,
    each with an optional Python stack id (`python`: a PythonFrames or None)."""

    python: Any = None

    def key_path(self, key: Any, py_stack_id: int, value: int, **opts: Any) -> list[Frame]:
        """One ptk_stack_key's user (Python merged in) and kernel frames, root first."""
        stack_map = self.prog["stack_traces"]
        if self.python is not None and py_stack_id:
            return self.python.key_path(self.symbolizer, stack_map, key, py_stack_id, value,
                                        **opts)
        return stack_path(self.symbolizer, stack_map, pid=key.pid,
                          user_stack_id=key.user_stack_id, kernel_stack_id=key.kernel_stack_id,
                          user_stack_hash=key.user_stack_hash,
                          kernel_stack_hash=key.kernel_stack_hash, **opts)

    def samples(self) -> StackProfile:
        if self.python is not None:
            self.python.begin_read()
        profile = StackProfile(samples=self.key_samples(), loss=self.loss())
        profile.loss.unknown_frames += self.symbolizer.unknown_frames
        return profile

    def key_samples(self) -> list[Sample]:
        raise NotImplementedError

    def close(self) -> None:
        try:
            if self.python is not None:
                self.python.close()
        finally:
            super().close()


def block_defines(*, user_only: bool, kernel_only: bool, min_us: int, max_us: int | None,
                  stack_storage_size: int, unwind: str = "dwarf") -> dict:
    """Check and translate the options offcputime, offwaketime and wakeuptime share."""
    if user_only and kernel_only:
        raise UsageError("-U and -K exclude each other: give at most one")
    if max_us is not None and max_us < min_us:
        raise UsageError(f"-M {max_us} is below -m {min_us}: the range would be empty")
    defines = {"MIN_BLOCK_NS": f"{min_us * 1000}ULL", "USER_STACKS": not kernel_only,
               "KERNEL_STACKS": not user_only, "STACK_STORAGE_SIZE": stack_storage_size,
               # user stacks unwound in the kernel from CFI, as profile's (ptk_unwind.h)
               "CFI_UNWIND": unwind == "dwarf" and not kernel_only,
               "USTACKS_SIZE": stack_storage_size,
               # kernel stacks in `kstacks` by a hash of their frames (ptk_kstack.h):
               # a stack map's bucket collisions would drop some
               "KSTACK_HASH": True, "KSTACKS_SIZE": 1 if user_only else stack_storage_size}
    if max_us is not None:
        defines["MAX_BLOCK_NS"] = f"{max_us * 1000}ULL"
    return defines


def start_blocked(name: str, session_class: type, value_type: str, *, pids=None, tids=None,
                  command=(), user_only=False, kernel_only=False, min_us=1, max_us=None,
                  stack_storage_size=16384, delimited=False, unwind="dwarf", python=False,
                  extra_defines=None, sample_log=False):
    """Start one of the blocked-time tools; values are reported in microseconds.
    `python`: CPython 3.8-3.13 threads get their Python frames (as profile's);
    `session_class` is then given them as `python=` (a PythonFrames).
    `sample_log` (offcputime's BPF only): each block is kept too (record)."""
    if unwind not in ("dwarf", "fp"):
        raise UsageError(f"unknown unwind method {unwind!r}: use dwarf or fp")
    defines = block_defines(user_only=user_only, kernel_only=kernel_only, min_us=min_us,
                            max_us=max_us, stack_storage_size=stack_storage_size,
                            unwind=unwind)
    defines.update(extra_defines or {})
    if sample_log:
        defines.update(samplelog.DEFINES)
    python = python and not kernel_only
    if python:
        defines.update(pysampling.defines())
    target, selected, selection = stacktools.select_targets(list(pids or []),
                                                            list(tids or []), command)
    defines.update(selection)
    prog, symbolizer, poll = stacktools.launch(name, defines, target, selected)
    meta = {"tool": name}
    if command:
        meta["command"] = " ".join(command)
    extra = {}
    if python:
        frames = pysampling.PythonFrames(prog)
        frames.register_at_entry(symbolizer)
        frames.snapshots = symbolizer.users
        frames.value_divisor, frames.value_unit = 1000, " us"   # values are nanoseconds
        poll = frames.poll(poll)
        extra = {"python": frames}
    if sample_log:
        extra["sample_log"] = samplelog.SampleLog(prog, divisor=1000)   # ns -> us
    return session_class(prog, target, symbolizer, poll,
                         dict(user=not kernel_only, kernel=not user_only, delimit=delimited),
                         meta, value_type=value_type, unit="microseconds", divisor=1000,
                         **extra)


def start(*, user_threads_only: bool = False, kernel_threads_only: bool = False,
          state: int | None = None, python: bool = False,
          **options) -> stacktools.StackSession:
    """offcputime's core: `read()` gives off-CPU microseconds per stack. `python`
    (off here, on in the command, as in profile.start): a CPython thread's
    Python stack is taken when it leaves the CPU, its time added there."""
    if user_threads_only and kernel_threads_only:
        raise UsageError("-u and -k exclude each other: give at most one")
    kind = 1 if user_threads_only else 2 if kernel_threads_only else 0
    session_class = pysampling.PythonStackSession if python else stacktools.StackSession
    session = start_blocked("offcputime", session_class, "off_cpu", python=python,
                            extra_defines={"THREAD_KIND": kind,
                                           "STATE": -1 if state is None else state},
                            **options)
    session.read_options["missing"] = True
    return session


def stack_tool_options(f):
    """Options offcputime, offwaketime and wakeuptime share with BCC."""
    decorators = [
        click.argument("duration_arg", metavar="[DURATION]", type=options.Seconds(0),
                       required=False),
        click.option("-p", "--pid", "pid_list", type=options.ProcessIds(), default=None,
                     help="Trace these processes only (comma-separated)."),
        click.option("-t", "--tid", "tid_list", metavar="TIDS", default=None,
                     help="Trace these threads only (comma-separated)."),
        click.option("-u", "--user-threads-only", is_flag=True, help="User threads only."),
        click.option("-k", "--kernel-threads-only", is_flag=True, help="Kernel threads only."),
        click.option("-U", "--user-stacks-only", "user_only", is_flag=True,
                     help="User stacks only."),
        click.option("-K", "--kernel-stacks-only", "kernel_only", is_flag=True,
                     help="Kernel stacks only."),
        click.option("-d", "--delimited", is_flag=True,
                     help="Put a delimiter between user and kernel stacks."),
        click.option("--stack-storage-size",
              type=click.IntRange(1, options.MAX_STACK_ENTRIES), default=16384,
                     show_default=True, help="Number of unique stack traces that can be stored."),
        click.option("-m", "--min-block-time", "min_us", type=click.IntRange(min=0), default=1,
                     show_default=True, help="Ignore blocks shorter than this (microseconds)."),
        click.option("-M", "--max-block-time", "max_us", type=click.IntRange(min=0),
                     default=None, help="Ignore blocks longer than this (microseconds)."),
        click.option("--top", type=click.IntRange(min=0), default=None,
                     help="Print only the N biggest stacks."),
        click.option("--python/--no-python", "python", default=True, show_default=True,
                     help="Show Python frames of CPython 3.8-3.13 processes (found per "
                          "process)."),
        click.option("--unwind", type=click.Choice(["dwarf", "fp"]), default="dwarf",
                     show_default=True,
                     help="User stacks: dwarf unwinds in the kernel with each binary's CFI "
                          "(.eh_frame; works without frame pointers), fp follows frame "
                          "pointers."),
        options.duration_option(),
        options.output_options("-f"),
        stacktools.with_output_options,
        options.standard,
        click.pass_context,
    ]
    for dec in reversed(decorators):
        f = dec(f)
    return f


@click.command("offcputime", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@click.option("--state", type=int, default=None,
              help="Only blocks that began in this task state (0 running/preempted, "
                   "1 interruptible, 2 uninterruptible).")
@stack_tool_options
def command(ctx: click.Context, state, duration_arg, pid_list, tid_list, user_threads_only,
            kernel_threads_only, user_only, kernel_only, delimited, stack_storage_size,
            min_us, max_us, top, python, unwind, duration, out, output, fmt) -> None:
    """Summarize off-CPU time (blocked) by stack trace, in microseconds.

    \b
    Examples:
      pytracekit offcputime 5              # all threads for 5 seconds
      pytracekit offcputime -p 185 -f      # one process, folded output
      pytracekit offcputime -m 1000        # blocks of 1 ms or more
      pytracekit offcputime -- ./myprog    # a command and its children
    """
    duration = stacktools.pick_duration(duration_arg, duration)
    fmt = stacktools.format_for(output, fmt)
    stacktools.check_writable(output)
    command = options.command_of(ctx)
    pids, tids = stacktools.id_list(pid_list, "pid"), stacktools.id_list(tid_list, "tid")
    session = start(pids=pids, tids=tids, command=command, user_threads_only=user_threads_only,
                    kernel_threads_only=kernel_threads_only, user_only=user_only,
                    kernel_only=kernel_only, min_us=min_us, max_us=max_us, state=state,
                    stack_storage_size=stack_storage_size, delimited=delimited,
                    unwind=unwind, python=python)
    run_stack_tool("offcputime", session, "off-CPU time (us)", pids, tids, command, user_only,
                   kernel_only, duration, out=out, top=top, output=output, fmt=fmt)


def run_waker_tool(ctx: click.Context, tool: str, what: str, start_fn, text, *,
                   user_threads_only, kernel_threads_only, duration_arg, pid_list, tid_list,
                   user_only, kernel_only, delimited, stack_storage_size, min_us, max_us,
                   top, python, unwind, duration, out, output, fmt) -> None:
    """The command body of offwaketime and wakeuptime (they differ in what they
    read and print, not in their options)."""
    if user_threads_only or kernel_threads_only:
        raise UsageError(f"{tool} does not filter by thread kind (-u/-k): use offcputime")
    duration = stacktools.pick_duration(duration_arg, duration)
    fmt = stacktools.format_for(output, fmt)
    stacktools.check_writable(output)
    command = options.command_of(ctx)
    pids, tids = stacktools.id_list(pid_list, "pid"), stacktools.id_list(tid_list, "tid")
    session = start_fn(pids=pids, tids=tids, command=command, user_only=user_only,
                       kernel_only=kernel_only, min_us=min_us, max_us=max_us,
                       stack_storage_size=stack_storage_size, delimited=delimited,
                       unwind=unwind, python=python)
    run_stack_tool(tool, session, what, pids, tids, command, user_only, kernel_only, duration,
                   out=out, top=top, output=output, fmt=fmt, text=text,
                   unseen="blocks" if tool == "wakeuptime" else "")


# what the Python stacks of each tool are taken at (its `python:` stderr line)
STACKS_TAKEN_AT = {"offcputime": "blocks", "offwaketime": "blocks and wakeups",
                   "wakeuptime": "wakeups"}


def run_stack_tool(tool: str, session: stacktools.StackSession, what: str, pids, tids, command,
                   user_only, kernel_only, duration, *, out, top, output, fmt,
                   text=None, unseen: str = "") -> None:
    """Announce, run until done, print and write; always detach. `unseen`
    names what the program's bpf/ptk_sched.h counts as not measured."""
    note = ""
    unseen_fields: dict[str, int] = {}
    try:
        out.opening(stacktools.opening_line(f"Tracing {what}", pids, tids, command, user_only,
                                            kernel_only, duration))
        run_until_done(session.target, duration=duration, poll=session.poll)
        profile = session.read()
        if unseen:
            unseen_fields["unseen"] = sched.unseen(session.prog)
        if getattr(session, "python", None) is not None:   # Python frames were on
            note = session.python.summary_line(STACKS_TAKEN_AT[tool])
    finally:
        session.close()
    stacktools.print_profile(tool, profile, out=out, top=top, text=text, **unseen_fields)
    sched.warn_unseen(unseen_fields.get("unseen", 0), unseen)
    if note:
        print(note, file=sys.stderr)
    if output:
        stacktools.write_output(profile, output, fmt, tool=tool)

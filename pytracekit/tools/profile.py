"""profile: sample stack traces at a timed interval (BCC's profile).

A perf_event cpu-clock timer fires -F times a second on every CPU (or every
-c nanoseconds); the BPF program counts (pid, user stack, kernel stack, comm)
in the kernel, so only distinct stacks cross to user space at the end.
"""
from __future__ import annotations

import os
import sys

import click

from ..cli import options
from ..families import stack_profilers as stacktools
from ..errors import NotFoundError, UsageError
from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..engine import endtimes
from ..engine.runner import run_until_done

DRY_RUN_ARGS = ["-F", "99", "1"]


def start(*, pids: list[int] | None = None, tids: list[int] | None = None,
          command: tuple[str, ...] = (), frequency: int | None = 49, period: int | None = None,
          user_only: bool = False, kernel_only: bool = False, include_idle: bool = False,
          cpu: int = -1, stack_storage_size: int = 16384, delimited: bool = False,
          annotate: bool = False, unwind: str = "dwarf",
          python: bool = False, sample_log: bool = False) -> stacktools.StackSession:
    """Compile, attach and start sampling; a command is held until
    run_until_done releases it. `python`: CPython 3.8-3.13 processes get their
    Python frames (pytracekit/symbolize/python), found per process as they are sampled;
    the profile, record, cprofile and export (profile source) commands turn it on
    by default. `sample_log`: every sample is kept too (record; samplelog.py)."""
    if user_only and kernel_only:
        raise UsageError("-U and -K exclude each other: give at most one")
    if period is None and not frequency:
        raise UsageError("give a sampling frequency (-F HZ) or a period (-c NS)")
    ncpu = os.cpu_count() or 1
    if cpu >= ncpu:
        raise NotFoundError(f"no CPU {cpu}: this machine has CPUs 0-{ncpu - 1}")
    target, selected, defines = stacktools.select_targets(list(pids or []), list(tids or []),
                                                          command)
    defines.update(INCLUDE_IDLE=include_idle, USER_STACKS=not kernel_only,
                   KERNEL_STACKS=not user_only, STACK_STORAGE_SIZE=stack_storage_size,
                   CFI_UNWIND=unwind == "dwarf" and not kernel_only,
                   USTACKS_SIZE=stack_storage_size, KSTACK_HASH=True,
                   KSTACKS_SIZE=1 if user_only else stack_storage_size)
    python = python and not kernel_only
    if python:   # imported only then: ~8 ms of CPU of a --no-python start
        from ..families import python_stacks as pysampling
        defines.update(pysampling.defines())
    if sample_log:   # (record) imported only then, as Python frames are
        from ..collect import samplelog
        defines.update(samplelog.DEFINES)
    # processes the tool did not start (a held command's are loaded before
    # they run): their first samples copied, unwound once loaded; not with a
    # sample log, whose events are the kernel's counted samples
    first = defines["CFI_UNWIND"] and not command and not sample_log
    if first:
        from ..collect import first_samples
        defines.update(first_samples.DEFINES)
    rate = {"sample_period": period} if period else {"sample_freq": frequency}
    prog, symbolizer, poll = stacktools.launch(
        "profile", defines, target, selected,
        lambda p: p.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["cpu-clock"],
                                      "on_cpu_sample", cpu=cpu, label="cpu-clock", **rate))
    meta = {"tool": "profile", "frequency": str(frequency or 0), "period": str(period or 0)}
    if command:
        meta["command"] = " ".join(command)
    extra: dict = {}
    session_class = stacktools.StackSession
    if python:
        frames = pysampling.PythonFrames(prog)
        frames.register_at_entry(symbolizer)
        frames.snapshots = symbolizer.users
        poll = frames.poll(poll)
        session_class, extra = pysampling.PythonStackSession, {"python": frames}
    if sample_log:
        extra["sample_log"] = samplelog.SampleLog(prog)
    if first:
        extra["first_samples"] = first_samples.FirstSamples(prog, symbolizer)
        poll = extra["first_samples"].poll(poll)
    if not user_only:   # kernel names read while it samples, not after (warm_kernel)
        poll = _warming_kernel_symbols(symbolizer, poll)
    return session_class(
        prog, target, symbolizer, poll,
        dict(user=not kernel_only, kernel=not user_only, delimit=delimited, missing=True,
             annotate=annotate),
        meta, value_type="samples", unit="count",
        period=period if period else int(1e9 / frequency), **extra)


def _warming_kernel_symbols(symbolizer, poll):
    """`poll`, whose first call (run_until_done's, once attached) starts reading
    the kernel's symbols in the background."""
    def first_poll(timeout_ms: int) -> None:
        symbolizer.warm_kernel()   # once: later calls return at once
        poll(timeout_ms)
    return first_poll


@click.command("profile", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@click.argument("duration_arg", metavar="[DURATION]", type=options.Seconds(0),
                required=False)
@click.option("-p", "--pid", "pid_list", type=options.ProcessIds(), default=None,
              help="Profile these processes only (comma-separated).")
@click.option("-L", "--tid", "tid_list", metavar="TIDS", default=None,
              help="Profile these threads only (comma-separated).")
@click.option("-U", "--user-stacks-only", "user_only", is_flag=True, help="User stacks only.")
@click.option("-K", "--kernel-stacks-only", "kernel_only", is_flag=True,
              help="Kernel stacks only.")
@click.option("-F", "--frequency", type=options.SampleFrequency(), default=None,
              help="Sample this many times a second on each CPU (default 49).")
@click.option("-c", "--count", "period", type=click.IntRange(min=1), default=None,
              help="Sample once every this many nanoseconds of CPU time instead of -F.")
@click.option("-d", "--delimited", is_flag=True, help="Put a delimiter between user and kernel stacks.")
@click.option("-a", "--annotations", "annotate", is_flag=True,
              help="Add _[k] to kernel frames.")
@click.option("-I", "--include-idle", is_flag=True, help="Include CPU idle stacks.")
@click.option("--python/--no-python", "python", default=True, show_default=True,
              help="Show Python frames of CPython 3.8-3.13 processes (found per process).")
@click.option("--stack-storage-size",
              type=click.IntRange(1, options.MAX_STACK_ENTRIES), default=16384, show_default=True,
              help="Number of unique stack traces that can be stored.")
@click.option("--unwind", type=click.Choice(["dwarf", "fp"]), default="dwarf", show_default=True,
              help="User stacks: dwarf unwinds in the kernel with each binary's CFI "
                   "(.eh_frame; works without frame pointers), fp follows frame pointers.")
@click.option("-C", "--cpu", type=click.IntRange(min=0), default=None,
              help="Sample this CPU only.")
@click.option("--top", "top", type=click.IntRange(min=0), default=None,
              help="Print only the N biggest stacks.")
@options.duration_option()
@options.output_options("-f")
@stacktools.with_output_options
@options.standard
@click.pass_context
def command(ctx: click.Context, duration_arg, pid_list, tid_list, user_only, kernel_only,
            frequency, period, delimited, annotate, include_idle, python,
            stack_storage_size, unwind, cpu, top, duration, out, output, fmt) -> None:
    """Profile CPU usage by sampling stack traces at a timed interval.

    \b
    Examples:
      pytracekit profile                 # all CPUs, user + kernel stacks, Ctrl-C to end
      pytracekit profile -F 99 5         # 99 Hz for 5 seconds
      pytracekit profile -p 185,186 -f   # two processes, folded output
      pytracekit profile --output out.html -- ./myprog   # a command; flame graph
    """
    duration = stacktools.pick_duration(duration_arg, duration)
    if frequency and period:
        raise UsageError("give -F HZ or -c PERIOD, not both")
    frequency = None if period else (frequency or 49)
    fmt = stacktools.format_for(output, fmt)
    stacktools.check_writable(output)
    command = options.command_of(ctx)
    pids, tids = stacktools.id_list(pid_list, "pid"), stacktools.id_list(tid_list, "tid")
    session = start(pids=pids, tids=tids, command=command, frequency=frequency, period=period,
                    user_only=user_only, kernel_only=kernel_only, include_idle=include_idle,
                    cpu=-1 if cpu is None else cpu, stack_storage_size=stack_storage_size,
                    delimited=delimited, annotate=annotate, unwind=unwind, python=python)
    note = ""
    try:
        rate = f"every {period} events" if period else f"at {frequency} Hertz"
        out.opening(stacktools.opening_line(f"Sampling {rate}", pids, tids, command,
                                            user_only, kernel_only, duration))
        # system-wide, its poll wakes for all it needs: quiet waits of 0.5 s
        run_until_done(session.target, duration=duration, poll=session.poll,
                       unwatched_wait=0.5)
        endtimes.mark("run ended")
        session.stop_sampling()
        session.prog.detach_tracepoints_in_background()   # their RCU waits overlap the read
        endtimes.mark("sampling stopped")
        profile = session.read()
        endtimes.mark("read and named")
        if python:
            from ..families.python_stacks import PythonStackSession
            if isinstance(session, PythonStackSession):
                note = session.summary_line()
    finally:
        session.close()
        endtimes.mark("closed (probes detached)")
    stacktools.print_profile("profile", profile, out=out, top=top)
    if note:
        print(note, file=sys.stderr)
    if output:
        stacktools.write_output(profile, output, fmt, tool="profile")
    endtimes.mark("printed")


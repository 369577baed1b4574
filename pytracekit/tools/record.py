"""record: save symbolized stacks with their metadata to a file (`perf record -g`).

On-CPU samples (profile's BPF) by default, off-CPU time with --off-cpu
(offcputime's BPF), or the stacks reaching any probe with -e SPEC
(stackcount's BPF: tracepoints, uprobes, USDT). The file format is in
pytracekit/collect/recording.py; `pytracekit report`, `script` and `diff` read it.
Each sample (an off-CPU one: each block) is kept with its time, CPU and
thread besides the aggregated stacks (samplelog.py), for `script`.
--json adds one summary line on stdout once the file is written.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import click

from ..cli import options
from ..collect import recording, samplelog
from ..families import stack_profilers as stacktools
from ..errors import UsageError
from ..model import Frame, Sample, StackProfile
from ..families.python_stacks import PythonStackSession
from ..engine.runner import announce, run_until_done
from ..collect.stack_maps import sample_from_key
from ..textsafe import cstr
from . import offcputime, profile, stackcount

DRY_RUN_ARGS = ["-o", "/tmp/pytracekit-dry-run.ptk", "1"]


@click.command("record", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@click.argument("duration_arg", metavar="[DURATION]", type=options.Seconds(0),
                required=False)
@click.option("-o", "--output", "output", metavar="FILE", required=True,
              help="Recording file to write (gzip JSON lines).")
@click.option("-a", "--all-cpus", "system_wide", is_flag=True,
              help="Record every process (the default without -p or a command).")
@click.option("-p", "--pid", "pid_list", type=options.ProcessIds(), default=None,
              help="Record these processes only (comma-separated).")
@click.option("-F", "--frequency", type=options.SampleFrequency(), default=49, show_default=True,
              help="On-CPU samples per second per CPU.")
@click.option("--off-cpu", "off_cpu", is_flag=True,
              help="Record off-CPU (blocked) time per stack instead of CPU samples.")
@click.option("-e", "--event", "event", metavar="SPEC", default=None,
              help="Record the stacks reaching this probe instead of CPU samples: "
                   "t:CATEGORY:EVENT, c:FUNC, /path/bin:FUNC, u:BIN:PROBE (as stackcount).")
@click.option("-g", "--call-graph", "call_graph", is_flag=True,
              help="Accepted as perf's -g: stacks are always recorded.")
@click.option("--python/--no-python", "python", default=True, show_default=True,
              help="Record Python frames of CPython 3.8-3.13 processes (found per process).")
@click.option("--stack-storage-size",
              type=click.IntRange(1, options.MAX_STACK_ENTRIES), default=16384,
              show_default=True, help="Number of unique stack traces that can be stored.")
@options.duration_option()
@options.output_options()
@options.standard
@click.pass_context
def command(ctx: click.Context, duration_arg, output, system_wide, pid_list, frequency,
            off_cpu, event, call_graph, python, stack_storage_size, duration,
            out) -> None:
    """Record stacks to a file for `report`, `script` and `diff`.

    \b
    Examples:
      pytracekit record -o spin.ptk -- ./myprog        # a command, on-CPU
      pytracekit record -o all.ptk -a -F 99 10         # everything, 10 seconds
      pytracekit record -o wait.ptk --off-cpu -p 185 5 # where pid 185 blocks
      pytracekit record -o io.ptk -e t:block:block_rq_issue -g 10
      pytracekit record -o m.ptk -e c:malloc -g -- ./myprog   # who calls malloc
      pytracekit record -o x.ptk --json 5              # + a JSON summary on stdout
    """
    duration = stacktools.pick_duration(duration_arg, duration)
    command = options.command_of(ctx)
    pids = stacktools.id_list(pid_list, "pid")
    stacktools.check_writable(output)
    if system_wide and (pids or command):
        raise UsageError("-a records everything: leave out -p and the command")
    if event and off_cpu:
        raise UsageError("-e and --off-cpu record different things: give one")
    if event and len(pids) > 1:
        raise UsageError("-e records one process (-p PID) or all: give at most one pid")
    storage = stack_storage_size
    if event:
        session: Any = stackcount.start(event, pid=pids[0] if pids else None, command=command,
                                        per_pid=True, stack_storage=storage, announce=False,
                                        python=python, sample_log=True)
        started = time.monotonic()   # attached: the recording's time starts
        what, target = f"stacks at {event}", session.tracer.target
    elif off_cpu:
        session = offcputime.start(pids=pids, command=command, stack_storage_size=storage,
                                   python=python, sample_log=True)
        what, target = "off-CPU time", session.target
    else:
        session = profile.start(pids=pids, command=command, frequency=frequency,
                                stack_storage_size=storage, python=python, sample_log=True)
        what, target = f"stacks at {frequency} Hz", session.target
    note = ""
    try:
        who = f"command {command[0]}" if command else ("PID " + ",".join(map(str, pids))
                                                       if pids else "all processes")
        announce(f"Recording {what} of {who} to {output}"
                 + (f" for {duration:g} secs." if duration else "... Hit Ctrl-C to end."))
        run_until_done(target, duration=duration, poll=session.poll)
        if not event and not off_cpu:
            session.stop_sampling()
        result = session.read()
        if event:
            result.duration_ns = int((time.monotonic() - started) * 1e9)
            result.meta = {"tool": "stackcount", "event": event}
            if command:
                result.meta["command"] = " ".join(command)
        if session.sample_log is not None:
            log = session.sample_log
            result = samplelog.counted_by_events(
                result, log.events(result, sample_namer(session)), log.leaves)
        if isinstance(session, PythonStackSession):
            note = session.summary_line()
    finally:
        session.close()
    if event and session.note:
        note = session.note
    result.meta["recorded"] = "event" if event else "off-cpu" if off_cpu else "on-cpu"
    result.meta.setdefault("event", "offcpu-time" if off_cpu else "cpu-clock")
    unmatched = session.sample_log.unmatched if session.sample_log is not None else 0
    if unmatched:   # their stacks found no room in the count map (map_full)
        result.meta["unmatched_events"] = str(unmatched)
    recording.save(result, output,
                   tool="stackcount" if event else "offcputime" if off_cpu else "profile")
    unit = "events" if event else "samples" if result.unit == "count" else result.unit
    kept = "" if result.events is None else " (each kept)"
    click.echo(f"recorded {result.total} {unit}{kept} in {len(result.samples)} distinct stacks "
               f"to {output} ({result.duration_ns / 1e9:.1f} s)", err=True)
    stacktools.emit_loss(result.loss)
    if unmatched:
        click.echo(f"WARNING: {unmatched} samples left out: their stacks found no room in "
                   "the count map (counted in map_full)", err=True)
    if note:
        click.echo(note, err=True)
    out.emit(json=lambda: summary(result, output))


def sample_namer(session: Any) -> Callable[[Any, int], Sample]:
    """How the session names one key (and Python stack id) in its read()."""
    if isinstance(session, stackcount.StackCount):
        return lambda key, py_stack_id: session._sample(key, 0, py_stack_id)
    stack_map, options_ = session.prog["stack_traces"], session.read_options
    python = getattr(session, "python", None)

    def name(key: Any, py_stack_id: int) -> Sample:
        if not (python is not None and py_stack_id):
            return sample_from_key(key, 0, stack_map, session.symbolizer, **options_)
        comm = cstr(key.comm)
        path = [Frame(comm, "process")] + python.key_path(
            session.symbolizer, stack_map, key, py_stack_id, 0, **options_)
        return Sample(tuple(path), 0, key.pid, key.tid, comm)
    return name


def summary(result: StackProfile, output: str) -> dict:
    """--json: what was written where, with the loss counters (record.schema.json)."""
    return {"type": "summary", "output": output, "samples": len(result.samples),
            "total": result.total, "unit": result.unit, "lost": result.loss.as_dict(),
            "duration_s": round(result.duration_ns / 1e9, 6)}

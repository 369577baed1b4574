"""record: save symbolized stacks with their metadata to a file (`perf record -g`).

On-CPU samples (profile's BPF) by default, off-CPU time with --off-cpu
(offcputime's BPF). The file format is in pytracekit/recording.py;
`pytracekit report` and `pytracekit diff` read it. --json adds one summary
line on stdout once the file is written.
"""
from __future__ import annotations

import click

from .. import options, recording, stacktools
from ..errors import UsageError
from ..model import StackProfile
from ..python.sampling import PythonStackSession
from ..render.jsonl import dumps
from ..runner import announce, run_until_done
from . import offcputime, profile

DRY_RUN_ARGS = ["-o", "/tmp/pytracekit-dry-run.ptk", "1"]


@click.command("record", cls=stacktools.CommandAfterDashes,
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
@click.option("--python/--no-python", "python", default=True, show_default=True,
              help="Record Python frames of CPython 3.8-3.13 processes (found per process).")
@click.option("--stack-storage-size",
              type=click.IntRange(1, options.MAX_STACK_ENTRIES), default=16384,
              show_default=True, help="Number of unique stack traces that can be stored.")
@options.duration_option()
@options.json_option()
@options.standard
@click.pass_context
def command(ctx: click.Context, duration_arg, output, system_wide, pid_list, frequency,
            off_cpu, python, stack_storage_size, duration, as_json) -> None:
    """Record stacks to a file for `report` and `diff`.

    \b
    Examples:
      pytracekit record -o spin.ptk -- ./myprog        # a command, on-CPU
      pytracekit record -o all.ptk -a -F 99 10         # everything, 10 seconds
      pytracekit record -o wait.ptk --off-cpu -p 185 5 # where pid 185 blocks
      pytracekit record -o x.ptk --json 5              # + a JSON summary on stdout
    """
    duration = stacktools.pick_duration(duration_arg, duration)
    command = stacktools.command_of(ctx)
    pids = stacktools.id_list(pid_list, "pid")
    stacktools.check_writable(output)
    if system_wide and (pids or command):
        raise UsageError("-a records everything: leave out -p and the command")
    storage = stack_storage_size
    if off_cpu:
        session = offcputime.start(pids=pids, command=command, stack_storage_size=storage,
                                   python=python)
        what = "off-CPU time"
    else:
        session = profile.start(pids=pids, command=command, frequency=frequency,
                                stack_storage_size=storage, python=python)
        what = f"stacks at {frequency} Hz"
    note = ""
    try:
        who = f"command {command[0]}" if command else ("PID " + ",".join(map(str, pids))
                                                       if pids else "all processes")
        announce(f"Recording {what} of {who} to {output}"
                 + (f" for {duration:g} secs." if duration else "... Hit Ctrl-C to end."))
        run_until_done(session.target, duration=duration, poll=session.poll)
        result = session.read()
        if isinstance(session, PythonStackSession):
            note = session.summary_line()
    finally:
        session.close()
    result.meta["recorded"] = "off-cpu" if off_cpu else "on-cpu"
    recording.save(result, output, tool="offcputime" if off_cpu else "profile")
    unit = "samples" if result.unit == "count" else result.unit
    click.echo(f"recorded {result.total} {unit} in {len(result.samples)} distinct stacks "
               f"to {output} ({result.duration_ns / 1e9:.1f} s)", err=True)
    stacktools.emit_loss(result.loss)
    if note:
        click.echo(note, err=True)
    if as_json:
        click.echo(dumps(summary(result, output)))


def summary(result: StackProfile, output: str) -> dict:
    """--json: what was written where, with the loss counters (record.schema.json)."""
    return {"type": "summary", "output": output, "samples": len(result.samples),
            "total": result.total, "unit": result.unit, "lost": result.loss.as_dict(),
            "duration_s": round(result.duration_ns / 1e9, 6)}

"""annotate: where in one function the samples landed, per source line and per
instruction (`perf annotate --stdio`), from a recording or a live profile."""
from __future__ import annotations

import click

from ..symbolize import annotation
from ..cli import options
from ..collect import recording
from ..families import stack_profilers as stacktools
from ..errors import UsageError
from ..render import annotate as render
from ..engine.runner import announce, run_until_done
from . import profile

DRY_RUN_ARGS = ["main", "--duration", "1"]


@click.command("annotate", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@click.argument("function", metavar="FUNCTION")
@click.option("-i", "--input", "input_path", metavar="FILE",
              help="Annotate from this recording (`pytracekit record -o FILE`) "
                   "instead of profiling now.")
@click.option("-p", "--pid", "pid_list", type=options.ProcessIds(), default=None,
              help="Profile these processes only (comma-separated).")
@click.option("-F", "--frequency", type=options.SampleFrequency(), default=499,
              show_default=True, help="Samples per second per CPU when profiling now.")
@click.option("--module", metavar="NAME",
              help="The file (path or base name) whose FUNCTION to annotate when several "
                   "have one of that name (default: the one with the most samples).")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Source lines and instructions to list, hottest first.")
@options.duration_option()
@options.output_options()
@options.standard
@click.pass_context
def command(ctx: click.Context, function, input_path, pid_list, frequency, module, top,
            duration, out) -> None:
    """Share of a function's samples per source line and per instruction.

    Counts the samples that were running in FUNCTION (its leaf samples), from
    a recording or from a profile taken now (-p, `-- COMMAND`, or every
    process), with the source text beside each line when the binary has DWARF.

    \b
    Examples:
      pytracekit annotate -i spin.ptk spin_inner        # from `pytracekit record -o spin.ptk`
      pytracekit annotate --duration 5 -p 185 compress  # profile pid 185 for 5 s
      pytracekit annotate hot_loop -- ./workload hotloop 2
      pytracekit annotate -i spin.ptk spin_inner --json # one JSON object
    """
    command = options.command_of(ctx)
    pids = stacktools.id_list(pid_list, "pid")
    if input_path is not None:
        if pids or command or duration is not None:
            raise UsageError("-i annotates a recording: leave out -p, --duration and the command")
        prof = recording.load(input_path)
    elif duration == 0:
        raise UsageError("--duration 0 takes no samples: give annotate a longer run "
                         "(or -i FILE)")
    else:
        prof = _profile_now(pids, command, frequency, duration)
    ann = annotation.annotate(prof, function, module)
    for note in ann.notes:
        click.echo(f"note: {note}", err=True)
    out.emit(text=lambda: render.text(ann, top).splitlines(),
             json=lambda: render.as_obj(ann, prof.loss, top))
    stacktools.emit_loss(prof.loss)     # on stderr: the JSON object holds it already


def _profile_now(pids: list[int], command: tuple[str, ...], frequency: int,
                 duration: float | None):
    """On-CPU stacks (profile's BPF), native frames only: annotate needs the leaf
    instruction, which a Python frame would stand in for."""
    session = profile.start(pids=pids, command=command, frequency=frequency, python=False)
    try:
        who = f"command {command[0]}" if command else ("PID " + ",".join(map(str, pids))
                                                       if pids else "all processes")
        announce(f"Sampling {who} at {frequency} Hz"
                 + (f" for {duration:g} secs." if duration is not None else
                    "... Hit Ctrl-C to end."))
        run_until_done(session.target, duration=duration, poll=session.poll)
        return session.read()
    finally:
        session.close()

#!/usr/bin/env python3
"""Compose a probe from a spec: a log2 histogram of the first argument of any
user function (malloc's size by default), for a process, a command or everyone.

Run as root from a checkout:
    .venv/bin/python examples/malloc_sizes.py -d 5                 # every process
    .venv/bin/python examples/malloc_sizes.py -p 1234 c:calloc     # one process
    .venv/bin/python examples/malloc_sizes.py c:malloc -- ls -l    # a command
"""
import click

from pytracekit.cli import options
from pytracekit.api import Tracer, render
from pytracekit.cli.command import main as run_cli

PROGRAM = r"""
#include "vmlinux.h"
#include "pytracekit.h"

BPF_HISTOGRAM(sizes, u32, 65);

int on_call(struct pt_regs *ctx)
{
    if (!ptk_selected())          /* -p / -- COMMAND: FILTER_PID is compiled in */
        return 0;
    sizes.increment(ptk_log2_slot(PT_REGS_PARM1(ctx)));
    return 0;
}
"""


@click.command("malloc_sizes", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.duration_option("-d")
@options.standard
@click.argument("spec", default="c:malloc")
@options.command_argument
def malloc_sizes(pid, duration, spec, command):
    """Histogram of the first argument of the function(s) SPEC matches."""
    with Tracer(PROGRAM, name="malloc_sizes", pid=pid, command=command) as tracer:
        probes = tracer.probe(spec, "on_call")          # wildcards, libraries, paths...
        tracer.start(f"Tracing {len(probes)} function(s) for {spec}... Hit Ctrl-C to end.")
        tracer.run(duration=duration)
        click.echo(render(tracer.histogram("sizes", unit="bytes")))
        warning = render(tracer.loss())
        if warning:
            click.echo(warning, err=True)


if __name__ == "__main__":
    import sys
    from pytracekit.cli import command as cli
    cli.cli.add_command(malloc_sizes)
    sys.exit(run_cli(["malloc_sizes", *sys.argv[1:]], prog="malloc_sizes"))

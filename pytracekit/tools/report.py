"""report: read a recording; top functions by self and total, a caller tree,
or conversion to any output format (`perf report --stdio`)."""
from __future__ import annotations

import sys

import click

from ..cli import options
from ..collect import recording
from ..render import reporting
from ..families import stack_profilers as stacktools

DRY_RUN_ARGS: list[str] = []
LOADS_BPF = False   # reads files only: no --ebpf program, nothing to dry-run


@click.command("report", context_settings=options.TOOL_CONTEXT)
@click.argument("path", metavar="FILE")
@click.option("--top", type=click.IntRange(min=1), default=20, show_default=True,
              help="Functions to list.")
@click.option("--sort", type=click.Choice(["self", "total"]), default="self", show_default=True,
              help="Order functions by self or total weight.")
@click.option("--no-tree", is_flag=True, help="Leave out the caller tree.")
@click.option("--min-percent", type=options.Finite(0, 100), default=1.0, show_default=True,
              help="Caller tree: hide branches below this share of the total.")
@options.output_options("-f")
@stacktools.with_output_options
@options.standard
def command(path, top, sort, no_tree, min_percent, out, output, fmt) -> None:
    """Summarize a recording made by `pytracekit record`.

    \b
    Examples:
      pytracekit report spin.ptk                       # top functions and caller tree
      pytracekit report spin.ptk --output spin.html    # flame graph (or .pb.gz, .folded...)
      pytracekit report spin.ptk --format pprof --output spin.pb.gz
    """
    profile = recording.load(path)
    tool = profile.meta.get("tool", "record")
    if output:
        stacktools.write_output(profile, output, stacktools.format_for(output, fmt), tool=tool)
        return
    if fmt == "pprof":
        sys.stdout.buffer.write(stacktools.render(profile, fmt, tool=tool))
        return
    if fmt:
        click.echo(stacktools.render(profile, fmt, tool=tool).decode(), nl=False)
        return

    def text(profile) -> str:
        parts = [summary_line(path, profile),
                 reporting.function_table_text(profile, top=top, sort=sort)]
        if not no_tree:
            parts += ["\n# Caller tree (top-down)\n",
                      reporting.caller_tree_text(profile, min_percent=min_percent)]
        return "\n".join(parts)
    out.stacks(profile, tool=tool, text=text,
               folded=lambda p: stacktools.bcc_folded(p).splitlines())
    out.loss(profile.loss)


def summary_line(path: str, profile) -> str:
    meta = profile.meta
    what = ("off-CPU microseconds" if profile.unit == "microseconds" else
            f"events at {meta['event']}" if meta.get("recorded") == "event" else "samples")
    extra = f" of `{meta['command']}`" if meta.get("command") else ""
    rate = f" at {meta['frequency']} Hz" if meta.get("frequency", "0") != "0" else ""
    return (f"# {path}: {profile.total} {what}{rate}{extra}, {len(profile.samples)} stacks, "
            f"{profile.duration_ns / 1e9:.1f} s, recorded {meta.get('created', '?')}\n")

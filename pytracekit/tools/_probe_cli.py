"""What funccount, stackcount and funclatency share: one BPF function
generated per probe, BCC's pattern argument and its interval printing."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable

import click

from ..engine import settings
from ..engine.loader import code_slot
from ..api import Tracer
from ..kernel import features
from ..families.periodic import report_every
from ..probes.specs import ResolvedProbe, program_return
from ..render.output import Output

# The token bpf/<tool>.bpf.c leaves for the generated per-probe functions.
PLACEHOLDER = code_slot("PTK_PROBE_FUNCTIONS")


def generated(template: str, probes: list[ResolvedProbe],
              numbers: Iterable[int]) -> dict[str, str]:
    """`replace=` for Program.from_file: `template` once per probe number {n},
    {ret} being what a function at probes[n] returns (probes.program_return)."""
    return {PLACEHOLDER: "".join(template.format(n=n, ret=program_return(probes[n].kind))
                                 for n in numbers)}


def attach_probes(tracer: Tracer, probes: list[ResolvedProbe], multi_fn: str,
                  fn_name: Callable[[int], str]) -> list[int]:
    """Attach every probe. Entry uprobes go through one uprobe_multi link per
    binary where the kernel has them, to BPF function `multi_fn` with the
    probe's number as cookie (hundreds attach and detach in a moment; each
    perf event costs an RCU grace period to remove). Every other probe n gets
    its own function fn_name(n). Returns those numbers n, for generated()."""
    uprobes = [n for n, p in enumerate(probes) if p.kind == "uprobe"]
    if uprobes and features.uprobe_multi_available()[0]:
        tracer.probe_multi([probes[n] for n in uprobes], multi_fn, uprobes)
    else:
        uprobes = []
    together = set(uprobes)
    numbered = [n for n in range(len(probes)) if n not in together]
    for n in numbered:
        tracer.probe(probes[n], fn_name(n))
    return numbered


def pattern_argument() -> Callable:
    return click.argument("pattern")


def debug_option() -> Callable:
    """BCC's -D/--debug of funccount: print the BPF program (our --ebpf)."""
    def callback(_ctx: Any, _param: Any, value: bool) -> bool:
        if value:
            settings.update(ebpf=True)
        return value
    return click.option("-D", "--debug", is_flag=True, expose_value=False, is_eager=True,
                        callback=callback, help="Print the BPF program and exit (as --ebpf).")


def run_with_reports(tracer: Tracer, report: Callable[[], None], *, duration: float | None,
                     interval: float | None, count: int | None = None,
                     poll: Callable[[int], None] | None = None) -> str:
    """Run until done, `report()` every interval (ending after `count` of
    them) and once at the end, except when the last interval's report has
    just covered the end (the one report loop, periodic.report_every)."""
    return report_every(tracer.run, lambda _final: report(), duration=duration,
                        interval=interval, count=count, poll=poll)


def run_tool(running: Any, report: Callable[[], None], *, duration: float | None,
             interval: float | None, out: Output, count: int | None = None,
             poll: Callable[[int], None] | None = None) -> None:
    """A tool's whole run after start(): reports, the loss (the output's loss
    record), "Detaching...", and detaching even when interrupted or failing.
    `running` is what the tool's start() returned (.tracer, .loss(), .close()).
    """
    try:
        run_with_reports(running.tracer, report, duration=duration, interval=interval,
                         count=count, poll=poll)
        out.loss(running.loss())
        finish_message()
    finally:
        running.close()


def timestamp() -> str:
    return time.strftime("%H:%M:%S")


def tracing_message(count: int, pattern: str) -> str:
    noun = "function" if count == 1 else "functions"
    return f'Tracing {count} {noun} for "{pattern}"... Hit Ctrl-C to end.'


def finish_message() -> None:
    """BCC's closing line."""
    click.echo("Detaching...", err=True)

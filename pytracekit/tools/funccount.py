"""funccount: count function calls, tracepoint hits and USDT probes (BCC's funccount).

    pytracekit funccount 'c:malloc'                    malloc() calls, system-wide
    pytracekit funccount -p 1234 '/bin/app:handle_*'   functions of one process
    pytracekit funccount -i 1 't:syscalls:sys_enter_*' system calls per second
    pytracekit funccount c:malloc -- ls -l             a command from its first instruction
"""
from __future__ import annotations

from dataclasses import dataclass

import click

from ..cli import options
from ..api import Tracer
from ..model import Counts
from ..probes.specs import ResolvedProbe, parse_spec
from ..engine.session import TracerSession
from ..families import summary
from . import _probe_cli as common

DRY_RUN_ARGS = ["t:syscalls:sys_enter_getpid"]
FUNCTION = "int count_{n}(void *ctx) {{ count_probe({n}); return {ret}; }}\n"
MULTI_FUNCTION = "count_multi"   # bpf/funccount.bpf.c, under FUNCCOUNT_MULTI


@dataclass
class FuncCount(TracerSession):
    """A running funccount: cumulative counts per probe."""

    tracer: Tracer
    probes: list[ResolvedProbe]

    def read(self) -> Counts:
        table = self.tracer["counts"]
        counts = Counts(("FUNC",))
        for n, probe in enumerate(self.probes):
            hits = table.sum(table.Key(n)).value
            counts.rows[(probe.name,)] = counts.rows.get((probe.name,), 0) + hits
        return counts


def start(pattern: str, *, pid: int | None = None, command: tuple[str, ...] = (),
          regex: bool = False, cpu: int | None = None, announce: bool = True) -> FuncCount:
    """Resolve `pattern`, compile one counter per probe, attach (a held command is
    released by `tracer.run()`)."""
    spec = parse_spec(pattern, regex=regex)
    tracer = Tracer(file="funccount", pid=pid, command=command)
    try:
        probes = tracer.resolve(spec)
        numbered = common.attach_probes(tracer, probes, MULTI_FUNCTION, lambda n: f"count_{n}")
        tracer.defines.update(FUNCCOUNT_PROBES=len(probes), PTK_GENERATED_PROBES=1,
                              FUNCCOUNT_CPU=-1 if cpu is None else cpu,
                              FUNCCOUNT_MULTI=len(numbered) < len(probes))
        tracer.replace.update(common.generated(FUNCTION, probes, numbered))
        tracer.start(common.tracing_message(len(probes), pattern) if announce else None)
    except BaseException:
        tracer.close()
        raise
    return FuncCount(tracer, probes)


def format_counts(counts: Counts) -> str:
    """BCC's table: smallest first, probes that never fired left out."""
    lines = [f"{'FUNC':<36} {'COUNT':>8}"]
    for (name,), n in sorted(counts.rows.items(), key=lambda kv: (kv[1], kv[0])):
        if n:
            lines.append(f"{name:<36} {n:>8}")
    return "\n".join(lines)


def delta(now: Counts, before: Counts | None) -> Counts:
    if before is None:
        return now
    return Counts(now.columns, {k: v - before.rows.get(k, 0) for k, v in now.rows.items()},
                  now.value_name)


@click.command("funccount", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.interval_option("-i")
@options.duration_option("-d")
@options.timestamp_option("-T")
@click.option("-r", "--regexp", "regex", is_flag=True,
              help='Use regular expressions. Default is "*" wildcards only.')
@click.option("-c", "--cpu", type=click.IntRange(min=0), default=None, help="Trace this CPU only.")
@options.output_options()
@common.debug_option()
@options.standard
@common.pattern_argument()
@options.command_argument
def command(pid, interval, duration, timestamp, regex, cpu, out, pattern, command):
    """Count functions, tracepoints and USDT probes matching PATTERN.

    PATTERN: func, p::func (kernel), lib:func, p:lib:func, /path:func,
    t:category:event, u:lib:probe; '*' wildcards, or regular expressions with -r.
    """
    interval, count, command = summary.interval_and_count(command, interval, None)
    counter = start(pattern, pid=pid, command=command, regex=regex, cpu=cpu)
    previous: list[Counts | None] = [None]

    def report() -> None:
        now = counter.read()
        shown = delta(now, previous[0])
        previous[0] = now
        stamp = common.timestamp() if timestamp else None
        out.line()
        if stamp:
            out.line(stamp)
        fired = Counts(("function",), {key: n for key, n in shown.rows.items() if n})
        out.counts(fired, text=lambda _fired: format_counts(shown),
                   **({"time": stamp} if stamp else {}))

    common.run_tool(counter, report, duration=duration, interval=interval, count=count,
                    out=out)

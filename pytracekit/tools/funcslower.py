"""funcslower: function calls slower than a threshold, one line each (BCC's funcslower).

    pytracekit funcslower -m 10 'c:getaddrinfo'        libc calls over 10 ms
    pytracekit funcslower -u 500 -a 2 '/bin/app:db_*'  over 500 us, first two arguments
    pytracekit funcslower -p 1234 app:handle app:flush  several patterns

Entry and return probes per function (uprobes; kprobes for kernel functions
where the kernel has them); see bpf/funcslower.bpf.c. -U/-K print each slow
call's user/kernel stack, taken at its return (user stacks as trace -U takes
them: ustacks.py); -f prints them folded, one line per call.
"""
from __future__ import annotations

import re
import time
from typing import Any

import click

from ..cli import options
from ..collect import stream, user_stacks as ustacks
from ..families import event_tools
from ..api import Tracer
from ..collect.stack_maps import without_bpf_frames
from ..symbolize.symbols import Symbolizer
from ..collect.user_stacks import EventUserStacks
from ..errors import UsageError
from ..probes.specs import ResolvedProbe, parse_spec
from ..cli.options import CommandAfterDashes, command_of
from . import _probe_cli as common

DRY_RUN_ARGS = ["c:getpid"]
FUNCTIONS = ("int slower_entry_{n}(struct pt_regs *ctx) {{ return on_entry(ctx); }}\n"
             "int slower_return_{n}(struct pt_regs *ctx) {{ return on_return(ctx, {n}); }}\n")

FIELDS = stream.layout("funcslower")   # struct event in bpf/funcslower.bpf.c
MAX_ARGS = sum(1 for name in FIELDS.names if re.fullmatch(r"args\d+", name))
STACK_STORAGE = 4096


class Slower(stream.EventStream):
    """The event stream, with the tracer that owns program and target."""

    def __init__(self, tracer: Tracer, probes: list[ResolvedProbe],
                 user_stacks: EventUserStacks | None = None) -> None:
        assert tracer.prog is not None
        super().__init__(tracer.prog, FIELDS)
        self.tracer, self.probes = tracer, probes
        self.user_stacks = user_stacks or EventUserStacks()
        self.kernel_symbols = Symbolizer(tracer.prog.bpf, show_module=False)

    def poll(self, handle, timeout_ms: int) -> int:
        self.user_stacks.poll()
        return super().poll(handle, timeout_ms)

    def user_stack(self, pid: int, stack_id: int, stack_hash: int) -> list[str]:
        """Leaf first (the caller of the slow function)."""
        return self.user_stacks.names(self.prog["user_stacks"], pid, stack_id, stack_hash)

    def kernel_stack(self, stack_id: int) -> list[str]:
        return [f.name for f in without_bpf_frames(
            self.kernel_symbols.stack(self.prog["stacks"], stack_id, kernel=True))]

    def loss(self):
        loss = super().loss()
        loss.unknown_frames += self.user_stacks.unknown_frames
        return loss

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
        try:
            self.user_stacks.close()
        finally:
            self.tracer.close()


def start(patterns: tuple[str, ...], *, pid: int | None = None, command: tuple[str, ...] = (),
          min_ns: int = 1_000_000, args: int = 0, max_depth: int = 32,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES, user_stack: bool = False,
          kernel_stack: bool = False, unwind: str = "dwarf") -> Slower:
    specs = []
    for pattern in patterns:
        spec = parse_spec(pattern)
        if spec.kind not in ("kprobe", "uprobe") or spec.offset:
            raise UsageError(f"funcslower times whole functions: give FUNC, LIB:FUNC or "
                             f"/path:FUNC, not '{pattern}'")
        specs.append(spec)
    pages = stream.check_buffer_pages(buffer_pages)
    tracer = Tracer(file="funcslower", pid=pid, command=command)
    try:
        entries = [p for spec in specs for p in tracer.resolve(spec)]
        fentry = [p.name for p in entries if p.via_fentry]
        if fentry:
            raise UsageError(f"funcslower reads return values and arguments from kprobes, "
                             f"which this kernel lacks ({fentry[0]} would need a BPF "
                             f"trampoline): time user functions (lib:func), or use "
                             f"funclatency {fentry[0]}")
        # Returns first: a call entered before its return probe exists would
        # never return to us and would leave its thread's depth off by one.
        for n, probe in enumerate(entries):
            tracer.probe(probe.returning(), f"slower_return_{n}")
        for n, probe in enumerate(entries):
            tracer.probe(probe, f"slower_entry_{n}")
        tracer.defines.update(PTK_GENERATED_PROBES=1, MIN_NS=min_ns, ARGS=args,
                              MAX_DEPTH=max_depth, BUFFER_PAGES=pages,
                              WAKEUP_BYTES=stream.wakeup_bytes(pages * stream.PAGE_SIZE),
                              USER_STACKS=int(user_stack), KERNEL_STACKS=int(kernel_stack),
                              STACK_STORAGE=STACK_STORAGE,
                              **ustacks.defines(unwind, user=user_stack, storage=STACK_STORAGE))
        tracer.replace.update(common.generated(FUNCTIONS, entries, range(len(entries))))
        user_stacks = EventUserStacks(sorted({p.binary for p in entries if p.binary}))

        def prepare(prog: Any) -> None:   # the unwinder is loaded before the probes fire
            if user_stack:
                assert tracer.target is not None
                user_stacks.setup(prog, pid=pid or 0, command=command,
                                  command_pid=tracer.target.pid if command else 0)
        try:
            tracer.start(prepare=prepare)
        except BaseException:
            user_stacks.close()
            raise
    except BaseException:
        tracer.close()
        raise
    return Slower(tracer, entries, user_stacks)


def header(timestamp: bool, time_of_day: bool, unit: str, args: int) -> str:
    head = "%-10s " % "TIME" if time_of_day else "%-10s " % "TIME(s)" if timestamp else ""
    return (head + "%-14s %-6s %7s %16s %s %s" % ("COMM", "PID", f"LAT({unit})", "RVAL", "FUNC",
                                                  "ARGS" if args else "")).rstrip()


def stacks_of(slower: Slower, row: tuple, user: bool, kernel: bool) -> tuple[list, list]:
    """(user, kernel) frames of one event, leaf first; [] for a kind not asked for."""
    pid, ustack_hash, ustack_id, kstack_id = row[3 + MAX_ARGS], row[-3], row[-2], row[-1]
    return (slower.user_stack(pid, ustack_id, ustack_hash) if user else [],
            slower.kernel_stack(kstack_id) if kernel else [])


def folded_formatter(slower: Slower, user: bool, kernel: bool):
    """BCC's -f: comm;user frames;[-;]kernel frames, root first, 1 (one line per call)."""
    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for row in rows:
            comm = row[7 + MAX_ARGS]
            ustack, kstack = stacks_of(slower, row, user, kernel)
            path = [stream.cstr(comm), *reversed(ustack)]
            path += (["-"] if ustack and kstack else []) + list(reversed(kstack))
            out.append("%s 1" % ";".join(path))
        return out
    return lines


def text_formatter(slower: Slower, timestamp: bool, time_of_day: bool, micro: bool, args: int,
                   user: bool = False, kernel: bool = False):
    first: list[int] = []

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for row in rows:
            ts, latency, retval = row[:3]
            values = row[3:3 + MAX_ARGS]
            pid, _tid, probe, _pad, comm = row[3 + MAX_ARGS:8 + MAX_ARGS]
            ustack, kstack = stacks_of(slower, row, user, kernel)
            prefix = ""
            if time_of_day:
                prefix = "%-10s " % time.strftime("%H:%M:%S")
            elif timestamp:
                first[:] = first or [ts]
                prefix = "%-10.6f " % ((ts - first[0]) / 1e9)
            lat = latency / 1e3 if micro else latency / 1e6
            argtext = ", ".join(f"0x{v:x}" for v in values[:args])
            out.append((prefix + "%-14.14s %-6s %7.2f %16x %s %s" % (
                stream.cstr(comm), pid, lat, retval, slower.probes[probe].name,
                argtext)).rstrip())
            out += [f"    {name}" for name in kstack + ustack]   # BCC: kernel, then user
        return out
    return lines


def json_formatter(slower: Slower, t0: int, args: int, user: bool = False,
                   kernel: bool = False):
    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for row in rows:
            ts, latency, retval = row[:3]
            values = row[3:3 + MAX_ARGS]
            pid, tid, probe, _pad, comm = row[3 + MAX_ARGS:8 + MAX_ARGS]
            obj = {"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                   "comm": stream.cstr(comm), "function": slower.probes[probe].name,
                   "lat_ns": latency, "retval": retval, "args": list(values[:args])}
            ustack, kstack = stacks_of(slower, row, user, kernel)
            if user:
                obj["user_stack"] = ustack
            if kernel:
                obj["kernel_stack"] = kstack
            out.append(obj)
        return out
    return objects


@click.command("funcslower", cls=CommandAfterDashes, context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@click.option("-m", "--min-ms", type=click.FloatRange(0, options.MAX_SECONDS * 1e3),
              default=None, help="Minimum duration to report, in milliseconds (default 1).")
@click.option("-u", "--min-us", type=click.FloatRange(0, options.MAX_SECONDS * 1e6),
              default=None, help="Minimum duration to report, in microseconds.")
@click.option("-a", "--arguments", type=click.IntRange(0, MAX_ARGS), default=0,
              help="Print this many of each call's first arguments (at most 6).")
@click.option("-T", "--time", "time_of_day", is_flag=True, help="Show HH:MM:SS timestamps.")
@options.timestamp_option("-t")
@click.option("-U", "--user-stack", is_flag=True,
              help="Print each slow call's user stack (taken at its return).")
@click.option("-K", "--kernel-stack", is_flag=True,
              help="Print each slow call's kernel stack (taken at its return).")
@ustacks.unwind_option()
@options.duration_option()
@event_tools.buffer_option("-b")
@options.output_options("-f")
@options.standard
@click.argument("patterns", nargs=-1, required=True, metavar="FUNCTION...")
@click.pass_context
def command(ctx, pid, min_ms, min_us, arguments, time_of_day, timestamp, user_stack,
            kernel_stack, unwind, duration, buffer_pages, out, patterns):
    """Trace function calls slower than a threshold, one line each.

    FUNCTION: func (kernel), lib:func, /path:func; '*' wildcards. Columns:
    COMM PID LAT RVAL FUNC [ARGS]."""
    if min_ms is not None and min_us is not None:
        raise UsageError("-m and -u exclude each other: give the threshold once")
    if not (user_stack or kernel_stack):
        out.refuse("folded", "-f/--folded prints stacks: add -U (user) and/or -K (kernel)")
    micro = min_us is not None
    min_ns = int(min_us * 1e3) if micro else int((1.0 if min_ms is None else min_ms) * 1e6)
    cmd = command_of(ctx)
    slower = start(patterns, pid=pid, command=cmd, min_ns=min_ns, args=arguments,
                   buffer_pages=buffer_pages, user_stack=user_stack, kernel_stack=kernel_stack,
                   unwind=unwind)
    t0 = time.monotonic_ns()
    printer = event_tools.Printer(out, header(timestamp, time_of_day, "us" if micro else "ms",
                                              arguments),
                                  text_formatter(slower, timestamp, time_of_day, micro, arguments,
                                                 user_stack, kernel_stack),
                                  json_formatter(slower, t0, arguments, user_stack, kernel_stack),
                                  folded_formatter(slower, user_stack, kernel_stack))
    unit = "us" if micro else "ms"
    threshold = min_ns / 1e3 if micro else min_ns / 1e6
    assert slower.tracer.target is not None
    with slower:
        event_tools.run(slower, slower.tracer.target, printer, duration=duration,
                   message=f"Tracing function calls slower than {threshold:g} {unit}... "
                           "Ctrl+C to quit.")

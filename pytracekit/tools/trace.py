"""pytracekit trace: print a line per probe hit, printf-style, with filters (BCC's trace).

    pytracekit trace 'c:open "%s", arg1'
    pytracekit trace 'r:c:malloc (retval == 0)'
    pytracekit trace 't:syscalls:sys_enter_openat (args->filename == "/etc/passwd") "%s", args->filename'
    pytracekit trace 'c:malloc(size_t size) (size > 1000) "size=%d", size'

A probe is `SPEC[(SIGNATURE)] [(FILTER)] ["FORMAT"[, ARG...]]`. Filters and
arguments are parsed by pytracekit.probes.expr; events travel through a ring buffer
and are formatted here. Lost events are counted and reported at the end.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click

from ..probes import expr, codegen as probegen, specs as probes
from ..cli import options
from ..engine.loader import code_slot
from ..collect import stream
from ..errors import SpecError, UsageError
from ..probes.expr import Conversion, Format
from ..render.output import Output
from ..engine.runner import Stop, Target, announce, run_until_done
from ..collect.stream import CallbackRings
from ..textsafe import cstr
from ..collect import user_stacks as ustacks
from ..collect.user_stacks import EventUnwinding
from ..engine.session import ProgramSession

HEADER = struct.Struct("=QIIIIii16sQQ")    # struct trace_header in bpf/trace.bpf.c
USTACKS_SIZE = 4096   # distinct user stacks unwound in the kernel (-U, --unwind dwarf)
DRY_RUN_ARGS = ['t:syscalls:sys_enter_openat (args->filename == "/nonexistent") '
                '"%s %d", args->filename, args->flags']


@dataclass
class ProbeText:
    """The parts of one trace probe as written."""
    text: str
    head: str                 # spec with signature: c:malloc(size_t size)
    filter: str | None = None
    format: str | None = None  # unescaped
    args: str = ""


def _match_paren(text: str, start: int, what: str, whole: str) -> int:
    """Index of the ')' closing the '(' at `start`, skipping string literals."""
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if c == '"':
            i = _string_end(text, i, what, whole)
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise SpecError(f"{what}: '(' is never closed: {whole}")


def _string_end(text: str, start: int, what: str, whole: str) -> int:
    i = start + 1
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == '"':
            return i
        i += 1
    raise SpecError(f"{what}: unterminated string: {whole}")


def split_probe(text: str) -> ProbeText:
    """Split `SPEC[(SIG)] [(FILTER)] ["FORMAT"[, ARGS]]` without interpreting it."""
    s = text.strip()
    if not s:
        raise SpecError("empty probe: give e.g. 'c:open \"%s\", arg1'")
    i = 0
    while i < len(s) and not s[i].isspace() and s[i] != '"':
        if s[i] == "(":
            i = _match_paren(s, i, "probe", text)
        i += 1
    out = ProbeText(text, s[:i])
    rest = s[i:].lstrip()
    if rest.startswith("("):
        end = _match_paren(rest, 0, "filter", text)
        out.filter = rest[1:end]
        rest = rest[end + 1:].lstrip()
    if rest.startswith('"'):
        end = _string_end(rest, 0, "format", text)
        out.format = expr.unescape(rest[1:end], "format", rest[:end + 1], 0)
        rest = rest[end + 1:].lstrip()
        if rest.startswith(","):
            out.args = rest[1:]
            if not out.args.strip():
                raise SpecError(f"format arguments: nothing after ',': {text}")
            rest = ""
    if rest:
        raise SpecError(f"probe: unexpected '{rest.split()[0]}' in '{text}' (form: SPEC "
                        "[(FILTER)] [\"FORMAT\"[, ARGS]])")
    return out


@dataclass
class TraceProbe:
    """One attach point with its generated code and its event layout."""
    index: int
    text: ProbeText
    resolved: Any                   # probes.ResolvedProbe
    function: probegen.ProbeFunction
    fmt: Format | None
    numbers: list[int] = field(default_factory=list)   # format arg indexes, in slot order
    strings: list[int] = field(default_factory=list)
    user_strings: set[int] = field(default_factory=set)  # read by ptk_read_user_str
    struct_c: str = ""                                 # the event struct

    @property
    def display(self) -> str:
        return self.resolved.function if self.resolved.kind == "tracepoint" else self.resolved.name


def build_probe(index: int, text: ProbeText, resolved: Any, params: tuple,
                string_size: int, pid: int | None = None) -> TraceProbe:
    fn = probegen.new_function(f"trace_probe_{index}", resolved, params, string_size,
                               "ptk_is_self()", pid)
    scope = fn.scope
    if text.filter is not None:
        fn.set_filter(expr.parse_filter(text.filter, scope))
    fmt = expr.parse_format(text.format, text.args, scope) if text.format is not None else None
    probe = TraceProbe(index, text, resolved, fn, fmt)
    event = f"struct trace_event_{index}"
    fields, body = [], []
    convs = fmt.conversions if fmt else []
    for i, (conv, node) in enumerate(zip(convs, fmt.args if fmt else [])):
        if conv.conv == "s":
            name = f"s{len(probe.strings)}"
            probe.strings.append(i)
            body.append(fn.emitter.read_string(node, f"__e->{name}", f"sizeof(__e->{name})"))
            if fn.emitter.reads_user_string(node):
                probe.user_strings.add(i)
        else:
            name = f"n{len(probe.numbers)}"
            probe.numbers.append(i)
            fields.append(f"u64 {name};")
            body.append(f"__e->{name} = (u64){fn.emit(node)};")
    fields += [f"char s{k}[STRING_SIZE];" for k in range(len(probe.strings))]
    fn.body = [f"{event} *__e = events.ringbuf_reserve(sizeof({event}));",
               "if (!__e) {", "    ptk_count_loss(PTK_LOST_EVENTS);", f"    return {fn.ret};", "}",
               f"trace_fill_header(&__e->h, ctx, {index});", *body,
               "events.ringbuf_submit(__e, 0);"]
    probe.struct_c = "\n".join([f"{event} {{", "    struct trace_header h;",
                                *("    " + f for f in fields), "};", ""])
    return probe


def plan(probe_texts: list[str], *, pid: int | None, string_size: int,
         limit: int) -> list[TraceProbe]:
    out: list[TraceProbe] = []
    for raw in probe_texts:
        text = split_probe(raw)
        spec_text, signature = probegen.split_signature(text.head)
        spec = probes.parse_spec(spec_text)
        params = probegen.parse_signature(signature, f"signature of {spec_text}")
        for resolved in probes.resolve(spec, pid=pid, limit=limit):
            out.append(build_probe(len(out), text, resolved, params, string_size, pid))
    return out


class RunningTrace(ProgramSession):
    """The running trace: compiled program, attached probes, event decoding."""

    def __init__(self, trace_probes: list[TraceProbe], prog: Any, string_size: int,
                 user_symbols: Any = None,
                 unwinding: EventUnwinding | None = None, target: Target | None = None) -> None:
        self.target = target     # finished by close()
        self.probes = trace_probes
        self.prog = prog
        self.string_size = string_size
        # Both made when first needed: symbolize/'s modules are not imported
        # before attaching a trace that names no frame (start-up, issue 17).
        self._symbolizer: Any = None
        self._user_symbols = user_symbols   # a buildid.BuildIdSymbolizer
        self.unwinding = unwinding   # --unwind dwarf (ustacks.py)
        binaries = sorted({p.resolved.binary for p in trace_probes if p.resolved.binary})
        if binaries:
            self.user_symbols.add_files(binaries)
        self._pids_seen: set[int] = set()
        self.first_ts: int | None = None
        self._read: list[dict[str, Any]] | None = None   # read()'s ring callback fills it

    @property
    def symbolizer(self) -> Any:
        """Kernel frames and %ksym/%usym values (a symbols.Symbolizer)."""
        if self._symbolizer is None:
            from ..symbolize.symbols import Symbolizer
            self._symbolizer = Symbolizer(self.prog.bpf, show_module=False)
            with contextlib.suppress(KeyError):   # kernel stacks by hash (KSTACK_HASH)
                self._symbolizer.kstacks = self.prog["kstacks"]
        return self._symbolizer

    @property
    def user_symbols(self) -> Any:
        """User stacks (a buildid.BuildIdSymbolizer)."""
        if self._user_symbols is None:
            from ..symbolize.buildid import BuildIdSymbolizer
            self._user_symbols = BuildIdSymbolizer()
        return self._user_symbols

    def read(self) -> list[dict[str, Any]]:
        """The session's read(): the events committed since the last read,
        decoded (`run` prints through its own callback instead)."""
        if self._read is None:
            got: list[dict[str, Any]] = []
            self._read, self._rings = got, CallbackRings(self.prog)
            self._rings.open("events", lambda _ctx, data, size: got.append(
                self.decode(ctypes.string_at(data, size))))
        self._rings.consume()
        events, self._read[:] = self._read[:], []
        return events

    def close(self) -> None:
        try:
            if self.unwinding is not None:
                self.unwinding.close()
        finally:
            super().close()
            if self.target is not None:
                self.target.finish()

    def decode(self, raw: bytes) -> dict[str, Any]:
        ts, pid, tid, index, cpu, ustack, kstack, comm, ustack_hash, kstack_hash = \
            HEADER.unpack_from(raw)
        probe = self.probes[index]
        values: list[Any] = [None] * (len(probe.numbers) + len(probe.strings))
        offset = HEADER.size
        for arg_index in probe.numbers:
            values[arg_index] = struct.unpack_from("=Q", raw, offset)[0]
            offset += 8
        for arg_index in probe.strings:
            chunk = raw[offset:offset + self.string_size]
            values[arg_index] = (stream.user_text(chunk) if arg_index in probe.user_strings
                                 else stream.cstr(chunk))
            offset += self.string_size
        return {"ts": ts, "pid": pid, "tid": tid, "probe": probe, "cpu": cpu,
                "user_stack": ustack, "kernel_stack": kstack, "user_stack_hash": ustack_hash,
                "kernel_stack_hash": kstack_hash,
                "comm": cstr(comm), "values": values}

    def message(self, event: dict[str, Any]) -> str:
        probe: TraceProbe = event["probe"]
        if probe.fmt is None:
            return ""
        out = []
        args = iter(zip(probe.fmt.args, event["values"]))
        for piece in probe.fmt.pieces:
            if isinstance(piece, Conversion):
                node, value = next(args)
                if piece.conv == "K":
                    value = self.symbolizer.kernel(value).name
                elif piece.conv == "U":
                    value = self.symbolizer.user(value, event["pid"]).name
                out.append(expr.format_value(piece, value, node.type))
            else:
                out.append(piece)
        return "".join(out)

    def stack(self, stack_id: int, pid: int, kernel: bool, stack_hash: int = 0) -> list[str]:
        from ..collect.stack_maps import without_bpf_frames
        from ..symbolize.buildid import mapped_files
        if kernel and stack_hash:   # in kstacks (ptk_kstack.h)
            frames = without_bpf_frames(self.symbolizer.hashed_kernel_stack(stack_hash))
        elif kernel:
            frames = without_bpf_frames(self.symbolizer.stack(self.prog["stacks"], stack_id,
                                                               kernel=True))
        else:
            if pid not in self._pids_seen:    # its files, while it may still be alive
                self._pids_seen.add(pid)
                self.user_symbols.add_files(mapped_files(pid))
            frames = self.user_symbols.user_stack(self.prog["user_stacks"], stack_id,
                                                  stack_hash, pid)
        return [f.name for f in frames]

    @property
    def unknown_frames(self) -> int:
        return sum(s.unknown_frames for s in (self._symbolizer, self._user_symbols)
                   if s is not None)


@click.command("trace", cls=options.CommandAfterDashes, context_settings=options.TOOL_CONTEXT)
@click.argument("probe", nargs=-1, required=True)
@options.pid_option("-p")
@options.tid_option("-L")
@click.option("-M", "--max-events", type=click.IntRange(min=1), default=None,
              help="Stop after this many events.")
@click.option("-t", "--timestamp", is_flag=True, help="Print seconds since the first event.")
@click.option("-T", "--time", "clock", is_flag=True, help="Print the time of day (HH:MM:SS).")
@click.option("-C", "--print-cpu", is_flag=True, help="Print the CPU of each event.")
@click.option("-U", "--user-stack", is_flag=True, help="Print the user stack of each event.")
@click.option("-K", "--kernel-stack", is_flag=True, help="Print the kernel stack of each event.")
@click.option("-b", "--buffer-pages", type=click.IntRange(1, options.MAX_BUFFER_PAGES), default=stream.DEFAULT_BUFFER_PAGES,
              show_default=True, help="Ring buffer size in pages (a power of two).")
@click.option("-Z", "--string-size", type=click.IntRange(8, 1024), default=80, show_default=True,
              help="Bytes kept of each string argument.")
@click.option("-S", "--include-self", is_flag=True, help="Also trace pytracekit itself.")
@click.option("-n", "--name", default=None,
              help="Only print events of processes whose name contains this.")
@click.option("-f", "--msg-filter", default=None,
              help="Only print events whose message contains this.")
@click.option("-v", "--print-program", is_flag=True,
              help="Print the generated BPF program (to stderr) before tracing.")
@click.option("--limit", type=click.IntRange(min=1), default=probes.DEFAULT_LIMIT,
              show_default=True, help="Most probes one spec may expand to.")
@ustacks.unwind_option()
@options.duration_option()
@options.output_options()
@options.standard
def command(probe, pid, tid, max_events, timestamp, clock, print_cpu, user_stack, kernel_stack,
            buffer_pages, string_size, include_self, name, msg_filter, print_program, limit,
            unwind, duration, out):
    """Trace probes, printing one line per event: PROBE... [-- COMMAND].

    PROBE is SPEC[(SIGNATURE)] [(FILTER)] ["FORMAT"[, ARG...]], e.g.
    'c:malloc(size_t size) (size > 1000) "size=%d", size'. A command after
    `--` is traced from its first instruction; the trace ends when it exits.
    """
    command_args = options.command_of(click.get_current_context())
    run(list(probe), command_args, pid=pid, tid=tid, max_events=max_events,
        timestamp=timestamp, clock=clock, print_cpu=print_cpu, user_stack=user_stack,
        kernel_stack=kernel_stack, buffer_pages=buffer_pages, string_size=string_size,
        include_self=include_self, name=name, msg_filter=msg_filter, limit=limit,
        duration=duration, out=out, print_program=print_program, unwind=unwind)


def start(probe_texts: list[str], command: tuple[str, ...] = (), *, pid: int | None = None,
          tid: int | None = None, user_stack: bool = False, kernel_stack: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES, string_size: int = 80, include_self: bool = False,
          limit: int = probes.DEFAULT_LIMIT, unwind: str = "dwarf") -> RunningTrace:
    """Parse, compile and attach; the caller runs and closes (see `run`);
    close() ends the held command (`.target`) too."""
    if not probe_texts:
        raise UsageError("give at least one probe, e.g. 'c:open \"%s\", arg1'")
    if buffer_pages < 1 or buffer_pages & (buffer_pages - 1):
        raise UsageError(f"--buffer-pages must be a power of two, not {buffer_pages}")
    trace_probes = plan(probe_texts, pid=pid, string_size=string_size, limit=limit)
    target = Target.from_options(pid, command)
    code = "\n".join(p.struct_c + p.function.source() for p in trace_probes)
    defines = {"BUFFER_PAGES": buffer_pages, "STRING_SIZE": string_size,
               "USER_STACKS": user_stack, "KERNEL_STACKS": kernel_stack,
               # kernel stacks by a hash of their frames (ptk_kstack.h): no bucket collisions
               "KSTACK_HASH": kernel_stack,
               "FILTER_TID": tid or 0, "SELF_PID": 0 if include_self else os.getpid(),
               **ustacks.defines(unwind, user=user_stack, storage=USTACKS_SIZE,
                                 command_pid=target.pid if command else 0)}
    user_symbols: list[Any] = [None]   # a BuildIdSymbolizer: made here only for the unwinder
    unwinding: list[EventUnwinding | None] = [None]

    def prepare(prog: Any) -> None:   # loaded before the probes fire
        if defines["CFI_UNWIND"]:     # else the program has no unwinder
            from ..symbolize.buildid import BuildIdSymbolizer
            user_symbols[0] = BuildIdSymbolizer()
            unwinding[0] = EventUnwinding.setup(prog, user_symbols[0].symbolizer,
                                                pids=[pid or 0], command=command,
                                                command_pid=target.pid)
    prog = probegen.load_and_attach("trace", [(p.function, p.resolved) for p in trace_probes],
                                    target, defines, {code_slot("TRACE_PROBES"): code}, prepare)
    tracer = RunningTrace(trace_probes, prog, string_size, user_symbols[0], unwinding[0], target)
    program = None
    if command:
        import shutil   # here, not at the top: it imports bz2 and lzma (~2.5 ms of a start)
        program = shutil.which(command[0])
    if program:   # its frames, even once it has exited
        tracer.user_symbols.add_files([os.path.realpath(program)])
    elif pid:
        from ..symbolize.buildid import mapped_files
        tracer.user_symbols.add_files(mapped_files(pid))
    return tracer


@dataclass
class EventFormatter:
    """Writes decoded events to the output: BCC-style lines or JSON objects."""

    tracer: RunningTrace
    timestamp: bool = False        # -t: seconds since the first event
    clock: bool = False            # -T: time of day
    print_cpu: bool = False
    user_stack: bool = False
    kernel_stack: bool = False
    name: str | None = None        # -n: only processes whose name contains this
    msg_filter: str | None = None  # -f: only messages containing this

    def header(self) -> str:
        cols = (["TIME    "] if self.timestamp or self.clock else []) + \
            (["CPU"] if self.print_cpu else [])
        return " ".join(cols + [f"{'PID':<7} {'TID':<7} {'COMM':<15} {'FUNC':<16} -"])

    def write(self, event: dict[str, Any], out: Output) -> bool:
        """One event to `out` (unflushed); False when -n/-f leave it out."""
        tracer = self.tracer
        if self.name is not None and self.name not in event["comm"]:
            return False
        msg = tracer.message(event)
        if self.msg_filter is not None and self.msg_filter not in msg:
            return False
        if tracer.first_ts is None:
            tracer.first_ts = event["ts"]
        probe = event["probe"]
        ustack = (tracer.stack(event["user_stack"], event["pid"], False, event["user_stack_hash"])
                  if self.user_stack else [])
        kstack = (tracer.stack(event["kernel_stack"], -1, True, event["kernel_stack_hash"])
                  if self.kernel_stack else [])

        def obj() -> dict[str, Any]:
            made = {"type": "event", "ts_ns": event["ts"], "pid": event["pid"],
                    "tid": event["tid"], "cpu": event["cpu"], "comm": event["comm"],
                    "probe": probe.text.text, "function": probe.display, "message": msg,
                    "args": event["values"]}
            if self.user_stack:
                made["user_stack"] = ustack
            if self.kernel_stack:
                made["kernel_stack"] = kstack
            return made

        def text() -> str:
            cols = []
            if self.timestamp:   # BCC keeps 8 characters of the offset
                cols.append(f"{(event['ts'] - tracer.first_ts) / 1e9:.6f}"[:8].ljust(8))
            elif self.clock:
                cols.append(f"{time.strftime('%H:%M:%S'):<8}")
            if self.print_cpu:
                cols.append(f"{event['cpu']:<3}")
            cols.append(f"{event['pid']:<7} {event['tid']:<7} {event['comm']:<15} "
                        f"{probe.display:<16} {msg}")
            lines = [" ".join(cols).rstrip()]
            for frames in (kstack, ustack):
                lines += [f"        {name}" for name in frames]
                if frames:
                    lines.append("")
            return "\n".join(lines)
        out.emit(text=text, json=obj, flush=False)
        return True


def run(probe_texts: list[str], command: tuple[str, ...] = (), *, max_events: int | None = None,
        timestamp: bool = False, clock: bool = False, print_cpu: bool = False,
        name: str | None = None, msg_filter: str | None = None, print_program: bool = False,
        duration: float | None = None, out: Output | None = None, **options_: Any) -> None:
    tracer = start(probe_texts, command, **options_)
    target = tracer.target
    prog = tracer.prog
    if print_program:
        sys.stderr.write(prog.full_text)
    out = out or Output()
    printer = EventFormatter(tracer, timestamp, clock, print_cpu, bool(options_.get("user_stack")),
                             bool(options_.get("kernel_stack")), name, msg_filter)
    printed = 0
    # libbpf consumes for as long as events keep coming: under a steady stream
    # one poll never returns unless the callback says stop (a negative value).
    run_end = stream.RunEnd()

    def on_event(_ctx: Any, data: Any, size: int) -> int:
        nonlocal printed
        if max_events is not None and printed >= max_events:
            return -1
        event = tracer.decode(ctypes.string_at(data, size))
        if run_end.past(event["ts"]):
            return -1
        if printer.write(event, out):
            printed += 1
        return 0

    rings = CallbackRings(prog)

    def poll(timeout_ms: int) -> None:
        if tracer.unwinding is not None:   # a held command may wait at its entry
            tracer.unwinding.poll(0)
        rings.poll(timeout_ms)
        out.flush()
        if max_events is not None and printed >= max_events:
            raise Stop("max events")

    try:
        rings.open("events", on_event)
        out.line(printer.header())
        announce(f"Tracing {len(tracer.probes)} probe{'s' if len(tracer.probes) != 1 else ''}"
                 "... Hit Ctrl-C to end.")
        run_until_done(target, duration=duration, poll=poll)
        # What was committed before the end and not yet read (the probes still fire)
        run_end.mark()
        rings.consume()
        out.flush()
        loss = prog.loss()
        loss.unknown_frames += tracer.unknown_frames
        out.loss(loss)
    finally:
        tracer.close()

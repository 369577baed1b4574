"""stackcount: count the distinct stacks that reach functions, tracepoints or
USDT probes (BCC's stackcount).

    pytracekit stackcount 'c:malloc'                 who calls malloc(), user+kernel stacks
    pytracekit stackcount -P -U '/bin/app:handle_*'  user stacks, per process
    pytracekit stackcount -f -K t:sched:sched_switch folded kernel stacks (flamegraph.pl)
    pytracekit stackcount c:malloc -- ls -l          a command from its first instruction
    pytracekit stackcount --unwind fp c:malloc       frame-pointer user stacks

User stacks are unwound in the kernel from each binary's CFI (ustacks.py,
bpf/ptk_ustack.h), so programs built without frame pointers have whole
stacks; a process whose mappings are not loaded yet, and --unwind fp, take
the frame-pointer walk, stored by build id. With --python (the default) a
CPython 3.8-3.13 thread's Python stack is read at the probe too and merged
into its user frames (python/sampling.py), as profile does.
"""
from __future__ import annotations

import errno
import sys
import time
from dataclasses import dataclass
from typing import Any

import click

from ..cli import options
from ..collect import samplelog
from ..api import Tracer
from ..collect.mapdrain import drained
from ..errors import UsageError
from ..model import Frame, LossReport, Sample, StackProfile
from ..probes.specs import ResolvedProbe, parse_spec
from ..engine import runner
from ..symbolize.buildid import BuildIdSymbolizer
from ..collect.stack_maps import DELIMITER, without_bpf_frames
from ..symbolize.symbols import Symbolizer
from ..families import summary
from . import _probe_cli as common
from ..textsafe import cstr
from ..collect import user_stacks as ustacks
from ..collect.user_stacks import EventUnwinding
from ..families import python_stacks as pysampling
from ..engine.session import TracerSession

DRY_RUN_ARGS = ["t:syscalls:sys_enter_getpid"]
LOST_STACK = Frame("[stack not stored]", "user")
FUNCTION = "int stack_{n}(void *ctx) {{ count_stack(ctx); return {ret}; }}\n"
MULTI_FUNCTION = "stack_multi"   # bpf/stackcount.bpf.c, under STACKCOUNT_MULTI


@dataclass
class StackCount(TracerSession):
    """A running stackcount: stacks counted since start (or the last clear())."""

    tracer: Tracer
    probes: list[ResolvedProbe]
    user: bool
    kernel: bool
    per_pid: bool
    symbolizer: Symbolizer              # kernel frames
    user_symbols: BuildIdSymbolizer     # user frames, stored by build id
    delimited: bool = False
    unwinding: EventUnwinding | None = None   # --unwind dwarf
    python: Any = None                        # a PythonFrames with --python
    note: str = ""                            # the python: line, made at close()
    sample_log: Any = None                    # a samplelog.SampleLog (record -e)
    _next_refresh: float = 0.0
    _python_poll: Any = None

    def _keys(self):
        """(ptk_stack_key, Python stack id or 0, count) of both count maps."""
        for key, value in self.tracer["counts"].items():
            yield key, 0, value.value
        if self.python is not None:
            for k, value in self.tracer["py_counts"].items():
                yield k.key, k.py_stack_id, value.value

    def read(self) -> StackProfile:
        merged: dict[tuple, Sample] = {}
        if self.sample_log is not None:   # what is still in its ring
            self.sample_log.drain()
        if self.python is not None:
            self.python.begin_read()
        for key, py_stack_id, value in self._keys():
            sample = self._sample(key, value, py_stack_id)
            ident = tuple((f.name, f.kind) for f in sample.stack) + (sample.pid,)
            prev = merged.get(ident)
            merged[ident] = sample if prev is None else Sample(
                prev.stack, prev.value + sample.value, prev.pid, prev.tid, prev.comm)
        return StackProfile(list(merged.values()), value_type="count", loss=self.loss())

    def _sample(self, key, value: int, py_stack_id: int = 0) -> Sample:
        """Root first: [comm], user frames (Python ones merged in), [--], kernel
        frames, [stack not stored]."""
        ustack = (self.user_symbols.user_stack(self.tracer["user_stacks"], key.user_stack_id,
                                               key.user_stack_hash, key.pid)
                  if self.user else [])
        if py_stack_id:   # leaf first, as ustack
            ustack = self.python.merged(ustack[::-1], py_stack_id, value)[::-1]
        kstack = without_bpf_frames(self._kernel_frames(key)) if self.kernel else []
        comm = cstr(key.comm) if self.per_pid else ""
        path = [Frame(comm, "process")] if self.per_pid else []
        path += reversed(ustack)
        if self.delimited and ustack and kstack:
            path.append(DELIMITER)
        path += reversed(kstack)
        if self._lost(key):
            path.append(LOST_STACK)
        # Without -P, stacks of different processes that name the same merge.
        return Sample(tuple(path), value, pid=key.pid if self.per_pid else 0, comm=comm)

    def _kernel_frames(self, key) -> list[Frame]:
        """Leaf first: stored by hash (KSTACK_HASH), else in the stack map."""
        if key.kernel_stack_hash:
            return self.symbolizer.hashed_kernel_stack(key.kernel_stack_hash)
        return self.symbolizer.stack(self.tracer["stack_traces"], key.kernel_stack_id,
                                     kernel=True)

    def _lost(self, key) -> bool:
        """A stack asked for but not stored (counted in the loss line too)."""
        return any(wanted and stack_id < 0 and stack_id != -errno.EFAULT
                   for wanted, stack_id in ((self.user, key.user_stack_id),
                                            (self.kernel, key.kernel_stack_id)))

    def clear(self) -> None:
        self.tracer["counts"].clear()
        if self.python is not None:
            self.tracer["py_counts"].clear()

    def remember_processes(self) -> None:
        """Snapshot the memory maps of live processes that have user stacks here,
        so their frames can still be named after they exit (BCC reads a
        process's maps once, when its symbol cache is made)."""
        if not self.user:
            return
        pids = {key.pid for key, _, _ in self._keys()}
        if self.tracer.target is not None and self.tracer.target.pid:
            pids.add(self.tracer.target.pid)
        self.user_symbols.remember(pids)

    def poll(self, timeout_ms: int) -> None:
        """For run_until_done: refresh process maps five times a second."""
        now = time.monotonic()
        if now >= self._next_refresh:
            self.remember_processes()
            self._next_refresh = now + 0.2
        if self.python is not None:      # its ring (and the unwinder's, one poll)
            if self._python_poll is None:
                self._python_poll = self.python.poll(self._poll_rings)
            self._python_poll(min(timeout_ms, 500))
        else:
            self._poll_rings(min(timeout_ms, 500))

    def _poll_rings(self, timeout_ms: int) -> None:
        if self.unwinding is not None:   # its rings: a held command may wait at its entry
            self.unwinding.poll(timeout_ms)
        elif self.python is not None or self.sample_log is not None:
            self.tracer.prog.bpf.ring_buffer_poll(timeout_ms)
        else:
            time.sleep(timeout_ms / 1000)

    def loss(self) -> LossReport:
        loss = self.tracer.loss()
        loss.unknown_frames = self.symbolizer.unknown_frames + self.user_symbols.unknown_frames
        return loss

    def close(self) -> None:
        try:
            if self.python is not None:
                self.note = self.python.summary_line("events")
                self.python.close()
        finally:
            if self.unwinding is not None:
                self.unwinding.close()
            self.tracer.close()


def start(pattern: str, *, pid: int | None = None, command: tuple[str, ...] = (),
          regex: bool = False, cpu: int | None = None, user: bool = True, kernel: bool = True,
          per_pid: bool = False, offsets: bool = False, delimited: bool = False,
          stack_storage: int = 16384, max_stacks: int = 10240,
          announce: bool = True, unwind: str = "dwarf", python: bool = False,
          sample_log: bool = False) -> StackCount:
    """`python` (off here, on in the command, as in profile.start): CPython
    3.8-3.13 threads get their Python frames, read at the probe. `sample_log`:
    each event is kept too (`record -e`; samplelog.py). `announce`: print
    the "Tracing..." line on stderr once attached (the command prints it
    through its output instead: text only)."""
    if not (user or kernel):
        raise UsageError("-K and -U are mutually exclusive: both stacks are the default")
    spec = parse_spec(pattern, regex=regex)
    tracer = Tracer(file="stackcount", pid=pid, command=command)
    per_pid = per_pid or bool(pid)
    python = python and user
    try:
        probes = tracer.resolve(spec)
        function = function_of(probes)
        numbered = common.attach_probes(tracer, probes, MULTI_FUNCTION,
                                        lambda n: f"stack_{function(n)}")
        tracer.defines.update(PTK_GENERATED_PROBES=1, USER_STACKS=user, KERNEL_STACKS=kernel,
                              PER_PID=per_pid, STACK_STORAGE=stack_storage,
                              MAX_STACKS=max_stacks, STACKCOUNT_CPU=-1 if cpu is None else cpu,
                              STACKCOUNT_MULTI=len(numbered) < len(probes),
                              # kernel stacks by a hash of their frames (ptk_kstack.h):
                              # a stack map's bucket collisions would drop some
                              KSTACK_HASH=kernel, KSTACKS_SIZE=stack_storage if kernel else 1,
                              **ustacks.defines(unwind, user=user, storage=stack_storage))
        if python:
            tracer.defines.update(pysampling.defines())
        if sample_log:
            tracer.defines.update(samplelog.DEFINES)
        tracer.replace.update(common.generated(FUNCTION, probes,
                                               sorted({function(n) for n in numbered})))
        user_symbols = BuildIdSymbolizer(show_offset=offsets)
        user_symbols.add_files(sorted({p.binary for p in probes if p.binary}))
        unwinding: list[EventUnwinding | None] = [None]

        def prepare(prog) -> None:   # loaded before the probes fire
            assert tracer.target is not None
            unwinding[0] = EventUnwinding.setup(prog, user_symbols.symbolizer,
                                                pids=[pid or 0], command=tuple(command),
                                                command_pid=tracer.target.pid)
        try:
            tracer.start(None, prepare=prepare)
            if announce:
                runner.announce(common.tracing_message(len(probes), pattern))
        except BaseException:
            if unwinding[0] is not None:
                unwinding[0].close()
            raise
        symbolizer = Symbolizer(tracer.prog.bpf, show_offset=offsets)
        if kernel:
            symbolizer.kstacks = tracer.prog["kstacks"]
        frames = pysampling.PythonFrames(tracer.prog) if python else None
        log = samplelog.SampleLog(tracer.prog) if sample_log else None
    except BaseException:
        tracer.close()
        raise
    counter = StackCount(tracer, probes, user, kernel, per_pid, symbolizer, user_symbols,
                         delimited and user and kernel, unwinding[0], frames,
                         sample_log=log)
    tracer.default_poll = counter.poll
    return counter


def function_of(probes: list[ResolvedProbe]):
    """The number of the function stack_N that probe n attaches to: one per
    kind of probe (a stack needs no probe number), so N tracepoints load and
    verify one program, not N (the in-kernel unwinder makes each cost up to a
    second); USDT probes keep one each (BCC makes their argument readers per
    function)."""
    first: dict[str, int] = {}
    for n, probe in enumerate(probes):
        first.setdefault(probe.kind, n)
    return lambda n: n if probes[n].kind == "usdt" else first[probes[n].kind]


def _ordered(profile: StackProfile) -> list[Sample]:
    """BCC's order: smallest count first."""
    return sorted(profile.samples, key=lambda s: (s.value, [f.name for f in s.stack]))


def format_stacks(profile: StackProfile, *, verbose: bool = False) -> str:
    """BCC's layout: kernel frames then user frames, leaf first, the process, the count."""
    blocks = []
    for s in _ordered(profile):
        leaf_first = list(reversed(s.stack))
        lines = []
        for f in leaf_first:
            if f.kind == "process":
                continue
            if f.kind == "marker" and f.name == "--":
                lines.append("    --")
                continue
            address = f"{f.address:<16x} " if verbose else ""
            lines.append(f"  {address}{f.name}")
        if s.comm:
            lines.append(f"    {s.comm} [{s.pid}]")
        lines.append(f"    {s.value}\n")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def format_folded(profile: StackProfile) -> str:
    """comm;root;...;leaf COUNT, '-' between user and kernel frames."""
    lines = []
    for s in _ordered(profile):
        names = ["-" if f.kind == "marker" and f.name == "--" else f.name for f in s.stack]
        lines.append(f"{';'.join(names)} {s.value}")
    return "\n".join(lines)


@click.command("stackcount", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@click.option("-c", "--cpu", type=click.IntRange(min=0), default=None, help="Trace this CPU only.")
@options.interval_option("-i")
@options.duration_option("-D")
@options.timestamp_option("-T")
@click.option("-r", "--regexp", "regex", is_flag=True,
              help='Use regular expressions. Default is "*" wildcards only.')
@click.option("-s", "--offset", "offsets", is_flag=True, help="Show address offsets.")
@click.option("-P", "--perpid", "per_pid", is_flag=True,
              help="Display stacks separately for each process.")
@click.option("-K", "--kernel-stacks-only", "kernel_only", is_flag=True, help="Kernel stack only.")
@click.option("-U", "--user-stacks-only", "user_only", is_flag=True, help="User stack only.")
@click.option("-v", "--verbose-addresses", "show_addresses", is_flag=True,
              help="Show raw addresses.")
@click.option("-d", "--delimited", is_flag=True, help="Insert a delimiter between kernel/user stacks.")
@click.option("--stack-storage", type=click.IntRange(1, options.MAX_STACK_ENTRIES), default=16384, show_default=True,
              help="Number of distinct stacks the kernel can store.")
@click.option("--max-stacks", type=click.IntRange(1, options.MAX_MAP_ENTRIES), default=10240, show_default=True,
              help="Number of distinct (stack, process) keys counted.")
@ustacks.unwind_option()
@click.option("--python/--no-python", "python", default=True, show_default=True,
              help="Show Python frames of CPython 3.8-3.13 processes (found per process).")
@options.output_options("-f")
@options.standard
@common.pattern_argument()
@options.command_argument
def command(pid, cpu, interval, duration, timestamp, regex, offsets, per_pid, kernel_only,
            user_only, show_addresses, delimited, stack_storage, max_stacks, unwind,
            python, out, pattern, command):
    """Count the stacks that lead to functions, tracepoints or USDT probes matching PATTERN.

    PATTERN: func, p::func (kernel), lib:func, p:lib:func, /path:func,
    t:category:event, u:lib:probe; '*' wildcards, or regular expressions with -r.
    """
    if kernel_only and user_only:
        raise UsageError("-K and -U are mutually exclusive: both stacks are the default")
    interval, count, command = summary.interval_and_count(command, interval, None)
    counter = start(pattern, pid=pid, command=command, regex=regex, cpu=cpu,
                    user=not kernel_only, kernel=not user_only, per_pid=per_pid,
                    offsets=offsets, delimited=delimited, stack_storage=stack_storage,
                    max_stacks=max_stacks, announce=False, unwind=unwind, python=python)
    try:
        out.opening(common.tracing_message(len(counter.probes), pattern))
    except BaseException:    # a Ctrl-C as it prints: detach, as run_tool would
        counter.close()
        raise

    def report() -> None:
        maps = ["counts"] + (["py_counts"] if counter.python is not None else [])
        with drained(counter.tracer, maps):
            profile = counter.read()
        out.line()
        if timestamp:
            out.line(common.timestamp())
        out.stacks(profile, text=lambda p: format_stacks(p, verbose=show_addresses) or None,
                   folded=lambda p: format_folded(p).splitlines())

    try:
        common.run_tool(counter, report, duration=duration, interval=interval, count=count,
                        out=out, poll=counter.poll)
    finally:
        if counter.note:   # Python stacks lost or cut (made when closing)
            print(counter.note, file=sys.stderr)

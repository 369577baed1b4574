"""systrace: every system call of a process or command, one line each, like
`perf trace`: time, duration, name, decoded arguments, result. As perf trace
has them: only slow calls (--min-duration, perf's --duration), a per-thread
summary (-s, -S), page faults (-F) and each call's user stack (--call-graph)."""
from __future__ import annotations

import ctypes as ct
import math
import time
from dataclasses import dataclass

import click

from ..engine import follow
from ..cli import options
from ..collect import cstruct, stream, user_stacks as ustacks
from ..kernel import syscalls
from ..errors import UsageError
from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..render.syscall_summary import Summary
from ..engine.runner import Target, announce, check_pid, run_until_done
from ..collect.stream import CallbackRings, RunEnd
from ..render.syscall_args import arguments_text, one_argument, result_text, string_mask
from ..textsafe import cstr
from ..engine.session import ProgramSession

DRY_RUN_ARGS = ["-a", "-e", "openat,close"]
STR_LEN = 128
KIND_SYSCALL, KIND_MAJFAULT, KIND_MINFAULT = 0, 1, 2
FAULT_NAMES = {KIND_MAJFAULT: "majfault", KIND_MINFAULT: "minfault"}
FAULT_EVENTS = {"maj": [("major-faults", "on_majfault")],
                "min": [("minor-faults", "on_minfault")],
                "all": [("major-faults", "on_majfault"), ("minor-faults", "on_minfault")]}
MAX_MIN_DURATION_MS = 365 * 24 * 3600 * 1000.0
STACK_INDENT = " " * 12


Call = cstruct.struct_layout("systrace", "call", {"STR_LEN": STR_LEN}).ctype()


def _string(raw: bytes) -> str | None:
    """A string argument as read; None when it could not be read (not paged in)
    or the pointer was NULL: the argument then shows as its pointer value, as
    perf trace shows it, never as a string that was not there."""
    text = stream.user_cstr(raw)
    return None if text is None or (raw[:1] == b"\0" and raw[1] == stream.NULL_MARK) else text


@dataclass(frozen=True)
class Record:
    time_ms: float
    duration_ms: float
    pid: int
    tid: int
    comm: str
    nr: int
    args: tuple
    strings: tuple
    ret: int
    returned: bool
    kind: int = KIND_SYSCALL
    stack: tuple[str, ...] | None = None     # user frames, leaf first (--call-graph)

    @property
    def syscall(self) -> str:
        return syscalls.name(self.nr)

    @property
    def is_fault(self) -> bool:
        return self.kind != KIND_SYSCALL

    def text(self) -> str:
        """The line, then with --call-graph the user stack, a frame a line."""
        first = self.fault_line() if self.is_fault else self.line()
        if self.stack is None:
            return first
        return "\n".join([first] + [STACK_INDENT + frame for frame in self.stack])

    def fault_line(self) -> str:
        """perf trace -F: `majfault [IP => ADDRESS]`; the IP is named by the
        stack's first frame when there is one (--call-graph)."""
        where = self.stack[0] if self.stack else f"{self.args[0]:#x}"
        return (f"{self.time_ms:10.3f} ( 0.000 ms): {self.comm}/{self.tid} "
                f"{FAULT_NAMES[self.kind]} [{where} => {self.args[1]:#x}]")

    def line(self) -> str:
        duration = f"{self.duration_ms:6.3f} ms" if self.returned else "     ?   "
        return (f"{self.time_ms:10.3f} ({duration}): {self.comm}/{self.tid} {self.syscall}("
                f"{arguments_text(self.nr, list(self.args), list(self.strings))}) = "
                f"{result_text(self.syscall, self.ret, self.returned)}")

    def as_json(self) -> dict:
        obj = self.fault_json() if self.is_fault else self.call_json()
        if self.stack is not None:
            obj["user_stack"] = list(self.stack)
        return obj

    def fault_json(self) -> dict:
        return {"type": "fault", "time_ms": round(self.time_ms, 6), "pid": self.pid,
                "tid": self.tid, "comm": self.comm, "fault": FAULT_NAMES[self.kind][:3],
                "ip": self.args[0], "address": self.args[1]}

    def call_json(self) -> dict:
        fields = syscalls.arguments(self.nr) or ()
        mask, texts = string_mask(self.nr), iter(self.strings)
        args = {}
        for i, (name, ctype) in enumerate(fields):
            text = next(texts, None) if mask & (1 << i) else None
            args[name] = text if text is not None else \
                one_argument(self.syscall, name, ctype, self.args[i], None)
        ret = self.ret if self.returned else None
        return {"type": "syscall", "time_ms": round(self.time_ms, 6),
                "duration_ms": round(self.duration_ms, 6) if self.returned else None,
                "pid": self.pid, "tid": self.tid, "comm": self.comm, "syscall": self.syscall,
                "nr": self.nr, "args": args, "ret": ret,
                "errno": syscalls.errno_name(-ret) if ret is not None and -4096 < ret < 0
                else None}


class SyscallTracer(ProgramSession):
    """systrace.bpf.c attached; `poll(ms)` hands each call to `on_call`."""

    def __init__(self, target: Target, on_call, *, tid: int | None = None,
                 only: list[str] | None = None, failures: bool = False,
                 min_duration_ms: float = 0.0, faults: str | None = None,
                 call_graph: str | None = None) -> None:
        wanted = [syscalls.number(n) for n in only or []]
        command_pid = target.pid if target.command else 0
        defines = {"FILTER_TID": tid or 0, "FILTER_SYSCALLS": bool(wanted),
                   "FAILED_ONLY": failures, "STR_LEN": STR_LEN,
                   "MIN_DURATION_NS": int(min_duration_ms * 1e6),
                   "USER_STACKS": bool(call_graph),
                   **ustacks.defines(call_graph or "fp", user=bool(call_graph), storage=4096,
                                     command_pid=command_pid)}
        if faults:
            defines["FAULTS"] = 1
        self.prog = follow.load("systrace", target, defines)
        self.user_stacks: ustacks.EventUserStacks | None = None
        self.on_call = on_call
        try:
            self._setup(target, wanted, faults, call_graph, command_pid)
        except BaseException:
            self.close()
            raise

    def _setup(self, target: Target, wanted: list[int], faults: str | None,
               call_graph: str | None, command_pid: int) -> None:
        masks = self.prog["string_args"]
        for nr in syscalls.table():
            mask = string_mask(nr)
            if mask and nr < 512:
                masks[masks.Key(nr)] = masks.Leaf(mask)
        table = self.prog["wanted"]
        for nr in wanted:
            table[table.Key(nr)] = table.Leaf(1)
        if call_graph:
            self.user_stacks = ustacks.EventUserStacks()
            self.user_stacks.setup(self.prog, pid=target.pid or 0, command=target.command,
                                   command_pid=command_pid)
        for event, fn in FAULT_EVENTS.get(faults or "", []):
            self.prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS[event], fn,
                                        sample_period=1, label=event)
        self.start_ns = time.monotonic_ns()
        self.run_end = RunEnd()
        self.rings = CallbackRings(self.prog)
        self.rings.open("events", self._event)
        self.prog.ready()

    def _event(self, _ctx, data, _size) -> int:
        # A negative return makes libbpf stop consuming, which under a steady
        # stream of calls it would otherwise never do.
        call = ct.cast(data, ct.POINTER(Call)).contents
        if self.run_end.past(call.ts):
            return -1
        self._deliver(call)
        return 0

    def _deliver(self, c: Call) -> None:
        strings = tuple(_string(bytes(c.str[i])) for i in range(2))
        stack = None
        if self.user_stacks is not None:
            stack = tuple(self.user_stacks.names(self.prog["user_stacks"], c.pid,
                                                 c.user_stack_id, c.user_stack_hash))
        self.on_call(Record((c.ts - self.start_ns) / 1e6, c.duration / 1e6, c.pid, c.tid,
                            cstr(c.comm), c.nr, tuple(c.args), strings,
                            c.ret, bool(c.returned), c.kind, stack))

    def poll(self, timeout_ms: int) -> None:
        if self.user_stacks is not None:
            self.user_stacks.poll()     # a held command may wait at its entry
        self.rings.poll(timeout_ms)

    def read(self) -> None:
        """The session's read(): every call committed so far, to on_call."""
        self.rings.consume()

    def drain(self) -> None:
        """What was committed before the end and not yet read (the probes still fire)."""
        self.run_end.mark()
        self.rings.consume()

    def loss(self):
        loss = self.prog.loss()
        if self.user_stacks is not None:
            loss.unknown_frames += self.user_stacks.unknown_frames
        return loss

    def close(self) -> None:
        try:
            if self.user_stacks is not None:
                self.user_stacks.close()
        finally:
            self.prog.close()


def start(target: Target, on_call, **options) -> SyscallTracer:
    return SyscallTracer(target, on_call, **options)


@click.command("systrace", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("-a", "--all", "everything", is_flag=True, help="Every process (use with -e).")
@click.option("-e", "--syscalls", "only", default=None,
              help="Only these system calls (comma separated names).")
@click.option("-x", "--failures", is_flag=True, help="Only calls that failed.")
@click.option("--min-duration", "min_duration", type=float, default=0.0, metavar="MS",
              help="Only calls that took at least MS milliseconds (perf trace's --duration).")
@click.option("-s", "--summary", "summary_only", is_flag=True,
              help="Only a summary per thread and system call: calls, errors, total, min, "
                   "avg, max, stddev (perf trace -s).")
@click.option("-S", "--with-summary", is_flag=True,
              help="Each call, then the summary (perf trace -S).")
@click.option("-F", "--pf", "faults", type=click.Choice(sorted(FAULT_EVENTS)), default=None,
              help="Also page faults: major, minor or all (perf trace -F).")
@click.option("--call-graph", type=click.Choice(ustacks.MODES), default=None,
              help="Each call's user stack: dwarf unwinds in the kernel with each binary's "
                   "CFI (no frame pointers needed), fp follows frame pointers.")
@options.duration_option("-d")
@options.output_options()
@options.standard
@options.command_argument
def command(pid, tid, everything, only, failures, min_duration, summary_only, with_summary,
            faults, call_graph, duration, out, command):
    """Each system call of a process or command: arguments, result, duration."""
    if not (pid or tid or command or everything):
        raise UsageError("give -p PID, -t TID, -- COMMAND, or -a for every process "
                         "(syscount summarizes instead)")
    if everything and (pid or tid or command):
        raise UsageError("-a traces every process: leave out -p, -t and the command")
    if tid:
        check_pid(tid)
    names = [n.strip() for n in only.split(",")] if only else None
    if names is not None and not all(names):
        raise UsageError(f"malformed -e '{only}': give names like openat,close")
    if not (math.isfinite(min_duration) and 0 <= min_duration <= MAX_MIN_DURATION_MS):
        raise UsageError(f"--min-duration {min_duration}: give milliseconds, 0 or more "
                         "(like 0.5 or 10)")
    if summary_only and with_summary:
        raise UsageError("-s prints only the summary, -S each call and the summary: "
                         "give one of them")
    target = Target.from_options(pid, command)
    tracer = None
    summary = Summary() if summary_only or with_summary else None

    def show(record: Record) -> None:
        if summary is not None and not record.is_fault and record.returned:
            summary.add(record.pid, record.tid, record.comm, record.syscall,
                        round(record.duration_ms * 1e6), -4096 < record.ret < 0)
        if not summary_only:
            out.emit(text=record.text, json=record.as_json)

    try:
        tracer = start(target, show, tid=tid, only=names, failures=failures,
                       min_duration_ms=min_duration, faults=faults, call_graph=call_graph)
        announce("Tracing system calls... Hit Ctrl-C to end.")
        run_until_done(target, duration=duration, poll=tracer.poll)
        tracer.drain()
        if summary is not None:
            out.emit(text=summary.text, json=summary.objects)
        out.loss(tracer.loss())
    finally:
        if tracer is not None:
            tracer.close()
        target.finish()

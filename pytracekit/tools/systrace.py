"""systrace: every system call of a process or command, one line each, like
`perf trace`: time, duration, name, decoded arguments, result."""
from __future__ import annotations

import ctypes as ct
import time
from dataclasses import dataclass

import click

from .. import follow, options, stream, syscalls
from ..errors import UsageError
from ..render.jsonl import dumps
from ..lossreport import print_loss
from ..runner import FINAL_DRAIN_S, Target, announce, check_pid, run_until_done
from ..stream import CallbackRings
from ..syscall_args import arguments_text, one_argument, result_text, string_mask
from ..textsafe import cstr

DRY_RUN_ARGS = ["-a", "-e", "openat,close"]
STR_LEN = 128


class Call(ct.Structure):
    """struct call in bpf/systrace.bpf.c."""
    _fields_ = [("ts", ct.c_uint64), ("args", ct.c_uint64 * 6), ("ret", ct.c_int64),
                ("duration", ct.c_uint64), ("nr", ct.c_uint32), ("pid", ct.c_uint32),
                ("tid", ct.c_uint32), ("returned", ct.c_uint32), ("comm", ct.c_char * 16),
                ("str", (ct.c_char * STR_LEN) * 2)]


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

    @property
    def syscall(self) -> str:
        return syscalls.name(self.nr)

    def line(self) -> str:
        duration = f"{self.duration_ms:6.3f} ms" if self.returned else "     ?   "
        return (f"{self.time_ms:10.3f} ({duration}): {self.comm}/{self.tid} {self.syscall}("
                f"{arguments_text(self.nr, list(self.args), list(self.strings))}) = "
                f"{result_text(self.syscall, self.ret, self.returned)}")

    def as_json(self) -> dict:
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


class Tracer:
    """systrace.bpf.c attached; `poll(ms)` hands each call to `on_call`."""

    def __init__(self, target: Target, on_call, *, tid: int | None = None,
                 only: list[str] | None = None, failures: bool = False) -> None:
        wanted = [syscalls.number(n) for n in only or []]
        self.prog = follow.load("systrace", target, {
            "FILTER_TID": tid or 0, "FILTER_SYSCALLS": bool(wanted), "FAILED_ONLY": failures,
            "STR_LEN": STR_LEN})
        masks = self.prog["string_args"]
        for nr in syscalls.table():
            mask = string_mask(nr)
            if mask and nr < 512:
                masks[masks.Key(nr)] = masks.Leaf(mask)
        table = self.prog["wanted"]
        for nr in wanted:
            table[table.Key(nr)] = table.Leaf(1)
        self.start_ns = time.monotonic_ns()
        self.on_call = on_call
        self.drain_until = 0.0
        self.rings = CallbackRings(self.prog)
        self.rings.open("events", self._event)
        self.prog.ready()

    def _event(self, _ctx, data, _size) -> int:
        # A negative return makes libbpf stop consuming, which under a steady
        # stream of calls it would otherwise never do.
        if self.drain_until and time.monotonic() > self.drain_until:
            return -1
        self._deliver(ct.cast(data, ct.POINTER(Call)).contents)
        return 0

    def _deliver(self, c: Call) -> None:
        strings = tuple(_string(bytes(c.str[i])) for i in range(2))
        self.on_call(Record((c.ts - self.start_ns) / 1e6, c.duration / 1e6, c.pid, c.tid,
                            cstr(c.comm), c.nr, tuple(c.args), strings,
                            c.ret, bool(c.returned)))

    def poll(self, timeout_ms: int) -> None:
        self.rings.poll(timeout_ms)

    def drain(self) -> None:
        """What arrived after the last poll, for a moment: the probes still fire."""
        self.drain_until = time.monotonic() + FINAL_DRAIN_S
        self.rings.consume()

    def close(self) -> None:
        self.prog.close()


def start(target: Target, on_call, **options) -> Tracer:
    return Tracer(target, on_call, **options)


@click.command("systrace", context_settings=options.TOOL_CONTEXT)
@options.pid_option("-p")
@options.tid_option("-t")
@click.option("-a", "--all", "everything", is_flag=True, help="Every process (use with -e).")
@click.option("-e", "--syscalls", "only", default=None,
              help="Only these system calls (comma separated names).")
@click.option("-x", "--failures", is_flag=True, help="Only calls that failed.")
@options.duration_option("-d")
@options.json_option()
@options.standard
@options.command_argument
def command(pid, tid, everything, only, failures, duration, as_json, command):
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
    target = Target.from_options(pid, command)
    tracer = None
    seen = 0

    def show(record: Record) -> None:
        nonlocal seen
        seen += 1
        click.echo(dumps(record.as_json()) if as_json else record.line())

    try:
        tracer = start(target, show, tid=tid, only=names, failures=failures)
        announce("Tracing system calls... Hit Ctrl-C to end.")
        run_until_done(target, duration=duration, poll=tracer.poll)
        tracer.drain()
        loss = tracer.prog.loss()
        print_loss(loss, as_json)
    finally:
        if tracer is not None:
            tracer.close()
        target.finish()

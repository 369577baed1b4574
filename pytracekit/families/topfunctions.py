"""top --functions: a live profile like perf top, from cpu-clock samples.

With `python`, a sample of a CPython thread whose leaf is in the interpreter
(its eval loop, object code, built-ins) is charged to the innermost Python
function, `handler (app.py)` in module `app.py`, as py-spy top does; samples
in C extensions, libc or the kernel stay native."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

import click

from typing import Callable

from ..kernel.perf import PERF_TYPE_SOFTWARE, SW_EVENTS
from ..engine.loader import Program
from ..engine.session import ProgramSession
from ..model import LossReport
from . import python_stacks as pysampling
from ..render.output import Output
from ..symbolize.symbols import Symbolizer


@dataclass(frozen=True)
class FunctionShare:
    symbol: str
    module: str
    kernel: bool
    samples: int
    python: bool = False


class FunctionProfile(ProgramSession):
    """top's function mode (engine.session): read() the samples since the last read."""

    def __init__(self, *, frequency: int, pid: int | None, idle: bool,
                 python: bool = False) -> None:
        self.frequency = frequency
        defines = {"INCLUDE_IDLE": idle, "FILTER_PID": pid or 0}
        if python:   # only the leaf function is read: no stacks are stored
            defines.update(pysampling.defines(stacks_size=1))
        self.prog = Program.from_file("top_functions", defines=defines)
        self.python: pysampling.PythonFrames | None = None
        self.poll = None
        try:
            if python:   # processes are registered as they are first sampled
                self.python = pysampling.PythonFrames(self.prog)
                self.poll = self.python.poll(self.prog.bpf.ring_buffer_poll)
            self.prog.attach_perf_event(PERF_TYPE_SOFTWARE, SW_EVENTS["cpu-clock"], "on_sample",
                                        sample_freq=frequency, label="cpu-clock")
            self.prog.ready()
            self.symbolizer = Symbolizer(self.prog.bpf, show_module=True)
        except BaseException:
            self.close()
            raise

    def take(self) -> list[FunctionShare]:
        """Samples since the last call, by symbol, most first; clears the map."""
        table = self.prog["samples"]
        items = [(k.pid, bool(k.kernel), k.ip, k.py_code if self.python else 0, v.value)
                 for k, v in table.items()]
        table.clear()
        acc: dict[tuple[str, str, bool, bool], int] = {}
        names: dict[tuple[int, int], tuple[str, str, str] | None] = {}
        for pid, kernel, ip, code, count in items:
            frame = self.symbolizer.kernel(ip) if kernel else self.symbolizer.user(ip, pid)
            symbol, module = split_module(frame.name, kernel)
            if not kernel and module == "[unknown]" and frame.module:
                module = frame.module     # an unnamed frame (MODULE+0x...) still has one
            python = None
            if code:
                if (pid, code) not in names:
                    names[(pid, code)] = self._python_function(pid, code)
                python = names[(pid, code)]
            charged = python is not None and module == python[2]   # leaf in the interpreter
            if charged:
                symbol, module = python[0], python[1]
            key = (symbol, module, kernel, charged)
            acc[key] = acc.get(key, 0) + count
        shares = [FunctionShare(s, m, k, n, p) for (s, m, k, p), n in acc.items()]
        return sorted(shares, key=lambda f: (-f.samples, f.symbol))

    read = take

    def _python_function(self, pid: int, code: int) -> tuple[str, str, str] | None:
        """(`qualname (file.py)`, file.py, the interpreter's file name) of a
        code object in a registered process; None when it cannot be read."""
        reader = self.python.readers.get(pid) if self.python else None
        info = reader.check(code) if reader else None
        if info is None:
            return None
        return f"{info.name} ({info.basename})", info.basename, os.path.basename(reader.proc.path)

    def loss(self) -> LossReport:
        loss = self.prog.loss()
        loss.unknown_frames += self.symbolizer.unknown_frames
        return loss

    def summary_line(self) -> str:
        return self.python.summary_line() if self.python else ""

    def close(self) -> None:
        try:
            if self.python:
                self.python.close()
        finally:
            self.prog.close()


def split_module(name: str, kernel: bool) -> tuple[str, str]:
    """BCC's 'symbol [module]' -> (symbol, module)."""
    if name.endswith("]") and " [" in name:
        symbol, module = name[:-1].rsplit(" [", 1)
        return symbol, "[kernel]" if kernel else os.path.basename(module)
    return name, "[kernel]" if kernel else "[unknown]"


def lines(shares: list[FunctionShare], seconds: float, frequency: int,
          limit: int | None) -> list[str]:
    total = sum(f.samples for f in shares)
    kernel = sum(f.samples for f in shares if f.kernel)
    head = (f"   PerfTop: {total / seconds if seconds else 0:8.0f} irqs/sec  "
            f"kernel:{100 * kernel / total if total else 0:4.1f}%  [{frequency} Hz cpu-clock]")
    out = [head, "-" * 74, f"{'Overhead':>9}  {'Shared Object':<20} Symbol"]
    for f in shares[:limit]:
        mark = "[k]" if f.kernel else "[p]" if f.python else "[.]"
        symbol = f.symbol if len(f.symbol) <= 90 else f.symbol[:87] + "..."   # C++ names
        out.append(f"{100 * f.samples / total:8.2f}%  {f.module:<20} {mark} {symbol}")
    return out


def printer(profile: FunctionProfile, *, interactive: bool, frequency: int,
            limit: int | None, out: Output) -> Callable[[], None]:
    """show(): print the functions sampled since the previous call."""
    last = [time.monotonic()]

    def show() -> None:
        now = time.monotonic()
        shares = profile.take()

        def obj() -> dict:
            total = sum(f.samples for f in shares) or 1
            return {"type": "functions", "time": time.time(),
                    "interval_s": round(now - last[0], 6), "frequency": frequency,
                    "rows": [{"symbol": f.symbol, "module": f.module, "kernel": f.kernel,
                              "python": f.python, "samples": f.samples,
                              "pct": round(100 * f.samples / total, 2)}
                             for f in shares[:limit]]}

        def text() -> str:
            if interactive:
                click.clear()
            rows = limit or (os.get_terminal_size().lines - 4 if interactive else limit)
            return "\n".join(lines(shares, now - last[0], frequency, rows)) + "\n"
        out.emit(text=text, json=obj)
        last[0] = now
    return show

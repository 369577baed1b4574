"""What every tool's start() returns: one session protocol.

A session is a tool's loaded (and, outside a dry run, attached) program with
the state its reading needs. Every one, whatever its family, is used alike:

    with tool.start(...) as session:   # close() detaches everything, once
        session.ready()                # attaching is done (ends a dry run)
        ...                            # the family's run loop
        session.read()                 # the results so far, as model values
        session.loss()                 # the model's LossReport

`read()` gives what the tool's family reads: cumulative results for the
summary and stack tools, the events committed since the last read for the
event tools, the usage since the last call for top. Families add their own
methods beside these (an event stream's poll/drain, a summary's clear).

`ProgramSession` is the base for a session around one `loader.Program` in
`self.prog`; a session holding more (a target, a symbolizer, rings)
overrides close() and calls the base's.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol, runtime_checkable

from ..model import LossReport


@runtime_checkable
class Session(Protocol):
    """The one shape of what a tool's start() returns (see the module doc)."""

    def ready(self) -> None: ...

    def read(self) -> Any: ...

    def loss(self) -> LossReport: ...

    def close(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...


class ProgramSession:
    """A session around one Program (`self.prog`): ready/loss/close and the
    context manager from the program; read() from `reader(prog)` when given
    (a tool whose results are a module function of its program), else the
    subclass's own."""

    prog: Any

    def __init__(self, prog: Any, reader: Callable[[Any], Any] | None = None) -> None:
        self.prog = prog
        self._reader = reader

    def ready(self) -> None:
        if self.prog is not None:
            self.prog.ready()

    def read(self) -> Any:
        reader = getattr(self, "_reader", None)
        if reader is None:
            raise NotImplementedError(f"{type(self).__name__} has no read()")
        return reader(self.prog)

    def loss(self) -> LossReport:
        return self.prog.loss() if self.prog is not None else LossReport()

    def __getitem__(self, map_name: str) -> Any:
        return self.prog[map_name]

    def close(self) -> None:
        if self.prog is not None:
            self.prog.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TracerSession(ProgramSession):
    """A session around an `api.Tracer` in `self.tracer` (the probe tools):
    its program, and close() ends the tracer's target too."""

    tracer: Any

    @property   # type: ignore[override]
    def prog(self) -> Any:
        return self.tracer.prog

    def close(self) -> None:
        self.tracer.close()

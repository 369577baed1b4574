"""Run settings shared by the loader and every tool: --verbose/--ebpf/--dry-run.

They belong to one run of the pytracekit command and end with it: `run()`
opens that scope (cli.main and the click group both do, so in-process runs
and click's test runner are alike), the options' callbacks switch modes on
inside it, and the loader reads them there, so tools need no code of their
own for these modes. A context variable, not a module global: nothing a run
set survives it, so a test running the CLI in-process leaves no mode on for
the next. Outside a run (pytracekit used as a library) every mode is off.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import Iterator, Optional


@dataclass(frozen=True)
class Settings:
    """One run's --verbose, --ebpf and --dry-run."""
    verbose: bool = False
    ebpf: bool = False       # print the BPF C and exit
    dry_run: bool = False    # compile and load every program, attach nothing, exit


@dataclass
class _Run:
    """The settings of the run open in this context (settings.run)."""
    settings: Settings


_OFF = Settings()
_run: ContextVar[Optional[_Run]] = ContextVar("pytracekit_run", default=None)


def current() -> Settings:
    run_ = _run.get()
    return _OFF if run_ is None else run_.settings


@contextlib.contextmanager
def run() -> Iterator[None]:
    """The scope of one run; inside one already, the same run (cli.main opens
    it around click's, so its error handling still sees --verbose)."""
    if _run.get() is not None:
        yield
        return
    token = _run.set(_Run(Settings()))
    try:
        yield
    finally:
        _run.reset(token)


def update(**changes: bool) -> Settings:
    """Switch modes on for the current run (the options' callbacks)."""
    run_ = _run.get()
    if run_ is None:
        raise RuntimeError("settings.update() outside a run: call it inside settings.run()")
    run_.settings = replace(run_.settings, **changes)
    return run_.settings

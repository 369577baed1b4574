"""Options every tool shares, spelled the same everywhere.

BCC's tools disagree on short flags (stackcount's -D is a duration, profile's
-d a delimiter), so each decorator takes the short flags a tool wants while
the long option stays the same across all tools.
"""
from __future__ import annotations

from typing import Any, Callable

import click

from . import settings

F = Callable[..., Any]


def _compose(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(f: F) -> F:
        for dec in reversed(decorators):
            f = dec(f)
        return f
    return apply


def _set_mode(name: str) -> Callable[[click.Context, click.Parameter, bool], bool]:
    def callback(_ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
        if value:
            settings.update(**{name: True})
        return value
    return callback


# Eager so that they are in force before other callbacks validate anything.
standard = _compose(
    click.option("--ebpf", is_flag=True, expose_value=False, is_eager=True,
                 callback=_set_mode("ebpf"), help="Print the BPF C program and exit."),
    click.option("--dry-run", is_flag=True, expose_value=False, is_eager=True,
                 callback=_set_mode("dry_run"),
                 help="Compile and load the BPF programs, attach nothing, exit."),
    click.option("--verbose", is_flag=True, expose_value=False, is_eager=True,
                 callback=_set_mode("verbose"),
                 help="Show compiler and verifier output and tracebacks."),
)


class ProcessId(click.ParamType):
    """A process id: a positive number. The one rule for every tool's -p."""

    name = "PID"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            pid = value
        else:
            try:
                pid = int(str(value).strip(), 10)
            except ValueError:
                pid = 0
        if pid <= 0:
            self.fail(f"{value!r} is not a process id (give a positive number, e.g. from "
                      "pgrep NAME)", param, ctx)
        return pid


class ProcessIds(ProcessId):
    """Comma-separated process ids (the stack tools' -p 1,2), each as -p's."""

    name = "PIDS"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        parts = [part for part in str(value).split(",") if part.strip()]
        if not parts:
            self.fail(f"{value!r} is not a process id (give a positive number, e.g. from "
                      "pgrep NAME)", param, ctx)
        return [super(ProcessIds, self).convert(part, param, ctx) for part in parts]


def pid_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--pid", "pid", type=ProcessId(), default=None,
                        help="Trace this process only; the run ends when it exits.")


def tid_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--tid", "tid", type=int, default=None,
                        help="Trace this thread only.")


def duration_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--duration", "duration", type=click.FloatRange(min=0),
                        default=None, help="Stop after this many seconds.")


def interval_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--interval", "interval", type=click.FloatRange(min=0.01),
                        default=None, help="Print output every this many seconds.")


def json_option() -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (one object per line).")


def folded_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--folded", "folded", is_flag=True,
                        help="Print folded stacks (flamegraph.pl input).")


def timestamp_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--timestamp", "timestamp", is_flag=True,
                        help="Include a timestamp on each output line.")


command_argument = click.argument("command", nargs=-1, type=click.UNPROCESSED)

# `ignore_unknown_options` lets a command's own flags pass after `--`.
TOOL_CONTEXT = {"help_option_names": ["-h", "--help"]}

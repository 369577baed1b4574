"""Options every tool shares, spelled the same everywhere.

BCC's tools disagree on short flags (stackcount's -D is a duration, profile's
-d a delimiter), so each decorator takes the short flags a tool wants while
the long option stays the same across all tools.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable

import click

from ..engine import settings
from ..errors import UsageError
from ..render import output

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


# Longest duration or interval taken: a year. Past it a number is a typo, and
# timers overflow (time.sleep(1e300) raises).
MAX_SECONDS = 365 * 24 * 3600
MIN_INTERVAL = 0.01


# Upper bounds of sizes, shown in --help and in the error: past them the kernel
# refuses the map, or BCC spends a minute allocating it first
# (`--stack-storage-size 2000000000` spun 50 s).
MAX_STACK_ENTRIES = 1 << 20     # stack map entries, each up to 127 frames (1 KiB)
MAX_MAP_ENTRIES = 1 << 22       # hash map entries
MAX_BUFFER_PAGES = 1 << 16      # ring buffer pages: 256 MiB
MAX_ARGS = 1024                 # arguments read per call (execsnoop --max-args)


def seconds(text: Any, what: str, minimum: float = 0.0) -> float:
    """A finite number of seconds in [minimum, MAX_SECONDS], or a UsageError
    naming `what` (NaN compares false with every bound: `-d nan` ran forever)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise UsageError(f"{what} {text!r} is not a number of seconds (e.g. 5 or 0.5)") from None
    if not math.isfinite(value):
        raise UsageError(f"{what} {text} is not a number of seconds: give a finite number "
                         "such as 5 or 0.5")
    if value < minimum:
        raise UsageError(f"{what} {text} is too small: give at least {minimum:g} seconds")
    if value > MAX_SECONDS:
        raise UsageError(f"{what} {text} is more than a year: give at most {MAX_SECONDS} "
                         "seconds")
    return value


def whole_number(text: Any, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    """A whole number in [minimum, maximum], or a UsageError naming `what`."""
    try:
        number = float(text)
        value = int(number)
    except (TypeError, ValueError, OverflowError):
        value = None
    if value is None or value != number or value < minimum or (
            maximum is not None and value > maximum):
        bound = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise UsageError(f"{what} {text} is not a whole number {bound}")
    return value


class Seconds(click.ParamType):
    """Seconds as a click type: finite, at least `minimum`, at most MAX_SECONDS."""

    name = "seconds"

    def __init__(self, minimum: float = 0.0) -> None:
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, float):
            return value
        try:
            return seconds(value, "", self.minimum)
        except UsageError as exc:
            self.fail(exc.message.lstrip(), param, ctx)


class Finite(click.FloatRange):
    """A FloatRange that refuses NaN and infinities (NaN passes every bound)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number", param, ctx)
        return number


MAX_SAMPLE_RATE_FILE = "/proc/sys/kernel/perf_event_max_sample_rate"


def max_sample_rate() -> int | None:
    """The kernel's highest sampling frequency (it may lower it at run time
    when sampling takes too long), or None where it cannot be read."""
    try:
        with open(MAX_SAMPLE_RATE_FILE) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class SampleFrequency(click.IntRange):
    """-F HZ: at least 1, at most `maximum` and the kernel's limit, which
    perf_event_open enforces with a bare EINVAL ("Failed to attach BPF to
    perf event")."""

    def __init__(self, maximum: int | None = None) -> None:
        super().__init__(min=1, max=maximum)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        hz = super().convert(value, param, ctx)
        limit = max_sample_rate()
        if limit is not None and hz > limit:
            self.fail(f"{hz} Hz is above the kernel's limit of {limit} samples per second "
                      f"(kernel.perf_event_max_sample_rate): give {limit} or less, or raise "
                      "the limit with sysctl", param, ctx)
        return hz


def duration_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--duration", "duration", type=Seconds(0), default=None,
                        help="Stop after this many seconds (0: as soon as attached).")


def interval_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--interval", "interval", type=Seconds(MIN_INTERVAL),
                        default=None, help="Print output every this many seconds.")


def json_option() -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (one object per line).")


def output_options(*folded_short: str, folded: bool = False) -> Callable[[F], F]:
    """--json (and --folded, with its short flags, where `folded` or any are
    given): the output is chosen here, once, and the tool gets it as `out`
    (render.output), never the flags."""
    def apply(f: F) -> F:
        @functools.wraps(f)
        def with_output(*args: Any, **kwargs: Any) -> Any:
            kwargs["out"] = output.chosen(json=kwargs.pop("as_json"),
                                          folded=kwargs.pop("folded", False))
            return f(*args, **kwargs)
        if folded or folded_short:
            with_output = folded_option(*folded_short)(with_output)
        return json_option()(with_output)
    return apply


def folded_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--folded", "folded", is_flag=True,
                        help="Print folded stacks (flamegraph.pl input).")


def timestamp_option(*short: str) -> Callable[[F], F]:
    return click.option(*short, "--timestamp", "timestamp", is_flag=True,
                        help="Include a timestamp on each output line.")


command_argument = click.argument("command", nargs=-1, type=click.UNPROCESSED)

# `ignore_unknown_options` lets a command's own flags pass after `--`.
TOOL_CONTEXT = {"help_option_names": ["-h", "--help"]}


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def split_interval_count(args: tuple[str, ...]) -> tuple[float | None, int | None, tuple[str, ...]]:
    """BCC's `[interval] [count]` positionals, then the command to run.

    Leading numbers are the interval and count (`runqlat 1 5`); the first
    word that is not a number starts the command (`runqlat -- ./prog 3`),
    so `runqlat 1 -- ./prog` works too.
    """
    numbers: list[float] = []
    rest = list(args)
    while rest and len(numbers) < 2 and _number(rest[0]) is not None:
        numbers.append(_number(rest.pop(0)))   # type: ignore[arg-type]
    interval = seconds(args[0], "interval", MIN_INTERVAL) if numbers else None
    count = whole_number(args[1], "count") if len(numbers) > 1 else None
    if rest and rest[0].startswith("-"):
        # ignore_unknown_options hands a mistyped option here: no command starts with '-'.
        raise UsageError(f"no such option: {rest[0]} (see --help; a command to run goes after --)")
    return interval, count, tuple(rest)


class CommandAfterDashes(click.Command):
    """`tool [OPTIONS] [DURATION] [-- COMMAND...]`: click would give the first
    word of COMMAND to DURATION; everything after `--` goes to ctx.meta instead."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["command"] = tuple(args[cut + 1:])
            args = args[:cut]
        return super().parse_args(ctx, long_forms(self.get_params(ctx), args))


def long_forms(params: list[click.Parameter], args: list[str]) -> list[str]:
    """`args` with each short option given alone (`-p 1`, not `-p1` or `-Uf`)
    in its long form (`--pid 1`), the same option to click: click tries a
    short option as a long one first, and the miss builds an error whose
    did-you-mean list imports difflib (a few ms of every start). One without
    its value stays as given (click's error then names it as the user did)."""
    longs: dict[str, tuple[str, int]] = {}   # option: (long form, values it takes)
    for param in params:
        if isinstance(param, click.Option):
            values = 0 if param.is_flag or param.count else param.nargs
            long = next((o for o in param.opts if o.startswith("--")), None)
            for opt in param.opts:
                longs[opt] = (long or opt, values)
    out, i = [], 0
    while i < len(args):
        arg = args[i]
        long, values = longs.get(arg, (arg, 0))
        if i + values >= len(args):   # its value is missing
            long, values = arg, 0
        out.append(long)
        out += args[i + 1:i + 1 + values]
        i += 1 + values
    return out


def command_of(ctx: click.Context) -> tuple[str, ...]:
    return tuple(ctx.meta.get("command", ()))

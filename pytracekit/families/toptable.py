"""What BCC's top-style tools (tcptop, filetop, biotop) share: every interval
the screen is cleared (on a terminal, unless -C) and a loadavg line printed
(unless -S), then the table; `[interval [count]]` defaults to 1 s."""
from __future__ import annotations

import sys
import time
from typing import Callable

import click

from ..cli import options
from . import summary

CLEAR_SCREEN = "\033[H\033[2J"


def prefix(*, clear: bool, loadavg: bool) -> str:
    """What goes before each report: the clear (a terminal only), or a blank
    line, then `HH:MM:SS loadavg: ...` as BCC prints it."""
    out = CLEAR_SCREEN if clear and sys.stdout.isatty() else "\n"
    if loadavg:
        with open("/proc/loadavg") as f:
            out += f"{time.strftime('%H:%M:%S')} loadavg: {f.read().strip()}\n\n"
    return out


def options_tail(f: Callable) -> Callable:
    """-C, -S, then --interval --count --duration --json, the standard options and
    `[INTERVAL [COUNT]] | -- COMMAND`."""
    for decorator in reversed([
            click.option("-C", "--noclear", is_flag=True, help="Don't clear the screen."),
            click.option("-S", "--nosummary", is_flag=True,
                         help="Skip the system summary line (loadavg)."),
            *_summary_options()]):
        f = decorator(f)
    return f


def _summary_options() -> list[Callable]:
    return [options.interval_option(), summary.count_option(), options.duration_option(),
            options.output_options(), options.standard,
            click.argument("words", nargs=-1, type=click.UNPROCESSED,
                           metavar="[INTERVAL [COUNT]] | [-- COMMAND]")]


def interval_count_command(words: tuple[str, ...], interval: float | None,
                           count: int | None) -> tuple[float, int | None, tuple[str, ...]]:
    interval, count, command = summary.interval_and_count(words, interval, count)
    return (1.0 if interval is None else interval), count, command    # BCC's default: 1 s


def stamp(number: int) -> dict:
    """The JSON fields of an interval's rows."""
    return {"time": time.strftime("%H:%M:%S"), "interval_no": number}

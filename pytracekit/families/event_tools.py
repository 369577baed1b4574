"""What the event tools (the snoops and other streaming tools) share above the
ring-buffer reader (collect/stream.py): their options, printing each batch as
lines or JSON, the run from attach to summary, and the summary itself."""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable

import click

from ..cli import options
from ..collect.stream import (DEFAULT_BUFFER_PAGES, EventStream, StreamSummary, drain_budget,
                              favour_reader)
from ..engine.runner import Target, announce, run_until_done
from ..render.jsonl import dumps, loss_obj
from ..render.text import loss_line


def buffer_option(*short: str) -> Callable:
    """`-b/--buffer-pages`: the ring buffer size (as BCC's opensnoop -b)."""
    return click.option(*short, "--buffer-pages", "buffer_pages",
                        type=click.IntRange(1, options.MAX_BUFFER_PAGES),
                        default=DEFAULT_BUFFER_PAGES, show_default=True,
                        help="Ring buffer size in pages (a power of two); a larger "
                             "buffer rides out longer bursts.")


def stream_options(f: Callable) -> Callable:
    """The options every streaming tool ends with: -b/--buffer-pages, --json,
    the standard ones and `-- COMMAND`."""
    for decorator in reversed([buffer_option("-b"), options.json_option(), options.standard,
                               options.command_argument]):
        f = decorator(f)
    return f



class Printer:
    """Writes formatted batches to stdout with one write per batch.

    `text(rows)` returns lines (without newlines) and `obj(rows)` dicts; the
    JSON form adds "type": "event"."""

    def __init__(self, as_json: bool, header: str | None,
                 text: Callable[[list[tuple]], Iterable[str]],
                 obj: Callable[[list[tuple]], Iterable[dict]]) -> None:
        self.as_json = as_json
        self.header = header
        self._text = text
        self._obj = obj
        self._out = sys.stdout
        self.printed = 0

    def start(self) -> None:
        if self.header and not self.as_json:
            self._out.write(self.header + "\n")
            self._out.flush()

    def rows(self, rows: list[tuple]) -> None:
        if self.as_json:
            lines = [dumps({"type": "event", **o}) for o in self._obj(rows)]
        else:
            lines = list(self._text(rows))
        if lines:
            self._out.write("\n".join(lines) + "\n")
            self.printed += len(lines)

    def flush(self) -> None:
        self._out.flush()


def run(stream: EventStream, target: Target, printer: Printer, *, message: str,
        duration: float | None = None) -> StreamSummary:
    """The whole life of a streaming tool after attaching: announce, print
    events until the duration ends, the command exits or Ctrl-C, read the
    backlog within a budget, then print the summary (stderr, or a JSON line)."""
    stream.ready()
    stream.open()
    favour_reader()
    printer.start()
    announce(message)

    def poll(timeout_ms: int) -> None:
        stream.poll(printer.rows, timeout_ms)
        printer.flush()

    reason = "interrupted"
    try:
        reason = run_until_done(target, duration=duration, poll=poll)
        stream.drain(printer.rows, drain_budget(reason))
    except KeyboardInterrupt:      # a second Ctrl-C, or one during a large batch
        pass
    finally:
        summary = stream.summary(printer.printed)
        report_summary(summary, printer.as_json)
    return summary


def main(pid: int | None, command: tuple[str, ...], open_stream: Callable[[int], EventStream],
         printer: Callable[[], Printer], *, duration: float | None, message: str) -> None:
    """A streaming tool's command body: the target (-p or `-- COMMAND`, whose
    pid `open_stream` compiles in), the program, the run, the teardown."""
    target = Target.from_options(pid, command)
    try:
        with open_stream(target.pid) as events:
            run(events, target, printer(), duration=duration, message=message)
    finally:
        target.finish()


def summary_obj(summary: StreamSummary) -> dict[str, Any]:
    """The summary's JSON line (its "loss" fields, then the counts)."""
    return {**loss_obj(summary.loss), "captured": summary.captured,
            "printed": summary.printed, "unread": summary.unread}


def report_summary(summary: StreamSummary, as_json: bool) -> None:
    out = sys.stdout
    if as_json:
        out.write(dumps(summary_obj(summary)) + "\n")
    out.flush()
    print(summary.line(), file=sys.stderr)
    warning = loss_line(summary.loss)
    if warning:
        print(warning, file=sys.stderr)
    sys.stderr.flush()

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
from ..render.jsonl import loss_obj
from ..render.output import Output
from . import sched


def buffer_option(*short: str) -> Callable:
    """`-b/--buffer-pages`: the ring buffer size (as BCC's opensnoop -b)."""
    return click.option(*short, "--buffer-pages", "buffer_pages",
                        type=click.IntRange(1, options.MAX_BUFFER_PAGES),
                        default=DEFAULT_BUFFER_PAGES, show_default=True,
                        help="Ring buffer size in pages (a power of two); a larger "
                             "buffer rides out longer bursts.")


def stream_options(f: Callable) -> Callable:
    """The options every streaming tool ends with: -b/--buffer-pages, the
    output (--json), the standard ones and `-- COMMAND`."""
    for decorator in reversed([buffer_option("-b"), options.output_options(), options.standard,
                               options.command_argument]):
        f = decorator(f)
    return f



class Printer:
    """A batch of events at a time to the run's output (one write per batch).

    `text(rows)` returns lines (without newlines), `obj(rows)` dicts and
    `folded(rows)` (tools with --folded) folded lines; the output writes the
    form it was chosen for (JSON adds "type": "event")."""

    def __init__(self, out: Output, header: str | None,
                 text: Callable[[list[tuple]], Iterable[str]],
                 obj: Callable[[list[tuple]], Iterable[dict]],
                 folded: Callable[[list[tuple]], Iterable[str]] | None = None) -> None:
        self.out = out
        self.header = header
        self._text = text
        self._obj = obj
        self._folded = folded
        self.printed = 0

    def start(self) -> None:
        if self.header:
            self.out.line(self.header)

    def rows(self, rows: list[tuple]) -> None:
        self.printed += self.out.events(rows, text=self._text, obj=self._obj,
                                        folded=self._folded)

    def flush(self) -> None:
        self.out.flush()


def run(stream: EventStream, target: Target, printer: Printer, *, message: str,
        duration: float | None = None, unseen: str = "") -> StreamSummary:
    """The whole life of a streaming tool after attaching: announce, print
    events until the duration ends, the command exits or Ctrl-C, read the
    backlog within a budget, then print the summary (stderr, or a JSON line).
    `unseen` names what the program's bpf/ptk_sched.h counts as not measured."""
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
        fields = {"unseen": sched.unseen(stream.prog)} if unseen else {}
        report_summary(summary, printer.out, **fields)
        sched.warn_unseen(fields.get("unseen", 0), unseen)
    return summary


def main(pid: int | None, command: tuple[str, ...], open_stream: Callable[[int], EventStream],
         printer: Callable[[], Printer], *, duration: float | None, message: str,
         unseen: str = "") -> None:
    """A streaming tool's command body: the target (-p or `-- COMMAND`, whose
    pid `open_stream` compiles in), the program, the run, the teardown."""
    target = Target.from_options(pid, command)
    try:
        with open_stream(target.pid) as events:
            run(events, target, printer(), duration=duration, message=message, unseen=unseen)
    finally:
        target.finish()


def summary_counts(summary: StreamSummary) -> dict[str, int]:
    return {"captured": summary.captured, "printed": summary.printed, "unread": summary.unread}


def summary_obj(summary: StreamSummary) -> dict[str, Any]:
    """The summary's JSON line (its "loss" fields, then the counts)."""
    return {**loss_obj(summary.loss), **summary_counts(summary)}


def report_summary(summary: StreamSummary, out: Output, **fields: Any) -> None:
    """What was captured and printed (stderr), then the loss: the output's one
    loss record, whose JSON line is summary_obj (and `fields`)."""
    print(summary.line(), file=sys.stderr, flush=True)
    out.loss(summary.loss, **summary_counts(summary), **fields)

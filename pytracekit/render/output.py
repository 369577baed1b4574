"""The output chosen once: where a tool's records go, in the form the command
line asked for (text, JSON lines, folded stacks).

`options.output_options` builds one `Output` from --json/--folded and hands
it to the tool as `out`; the tool emits records (counts, histograms, stacks,
event rows, lines for people, the loss) and never asks which form is on.
A record carries each form it has: the model value (the output lays it out,
BCC text or the shared JSON shapes of render/jsonl), a text function where a
tool's columns are its own, a JSON object where its schema is its own. A
form the record lacks writes nothing (a column header has no JSON); the
folded form writes the text of records that have no folded form.

Everything goes to sys.stdout as it is at the time of writing (the run's
guarded stdout, or a test's capture); warnings go to stderr in every form.
"""
from __future__ import annotations

import sys
from typing import Any, Callable, Iterable, Union

from ..errors import UsageError
from ..model import Counts, Histogram, LossReport, StackProfile
from . import jsonl
from .text import counts_table, log2_histogram, loss_line

# A form of a record: a string (one line, or several joined by newlines), an
# iterable of lines / of JSON objects, or a function returning one (called only
# when that form is the one written).
Text = Union[str, Iterable[str], Callable[[], Any], None]
Json = Union[dict, Iterable[dict], Callable[[], Any], None]


def _value(form: Any) -> Any:
    return form() if callable(form) else form


def _lines(form: Any) -> list[str]:
    value = _value(form)
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _objects(form: Any) -> list[dict]:
    value = _value(form)
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)


class Output:
    """The text form (BCC's layout): the base every form refines."""

    form = "text"

    # -- the one primitive ------------------------------------------------------
    def emit(self, *, text: Text = None, json: Json = None, folded: Text = None,
             flush: bool = True) -> int:
        """Write one record in the chosen form; returns the lines written."""
        lines = self._lines_of(text, json, folded)
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
        if flush:
            sys.stdout.flush()
        return len(lines)

    def _lines_of(self, text: Text, json: Json, folded: Text) -> list[str]:
        return _lines(text)

    def flush(self) -> None:
        sys.stdout.flush()

    def refuse(self, form: str, why: str) -> None:
        """A usage error naming `why` when `form` is the one chosen: an option
        that makes no sense in it (funcslower's -f without stacks)."""
        if self.form == form:
            raise UsageError(why)

    def redraws(self) -> bool:
        """Whether a screen redrawn in place may stand for the records (top's
        interactive view): text going to a terminal."""
        return sys.stdout.isatty()

    def text_only(self, option: str) -> None:
        """`option` prints a text of its own (cpuunclaimed's CSV): a usage
        error in any other form."""
        if self.form != "text":
            raise UsageError(f"{option} and --{self.form} exclude each other: choose one output")

    # -- records of the model ---------------------------------------------------
    def line(self, text: str = "") -> None:
        """A line for people (a column header, the time or a blank line between
        intervals): the text form only."""
        self.emit(text=text)

    def counts(self, counts: Counts, *, text: Callable[[Counts], Text] | None = None,
               **fields: Any) -> None:
        """A table of counts (`text(counts)`, else render.text.counts_table);
        in JSON one {"type": "count", column: value..., "count": n, **fields} per row."""
        self.emit(text=lambda: (text or counts_table)(counts),
                  json=lambda: [{**obj, **fields} for obj in jsonl.counts_objs(counts)])

    def histogram(self, hist: Histogram, *, text: Callable[[Histogram], Text] | None = None,
                  **fields: Any) -> None:
        """A log2 histogram (`text(hist)`, else BCC's print_log2_hist); in JSON
        jsonl.histogram_obj with `fields` added."""
        self.emit(text=lambda: (text or log2_histogram)(hist),
                  json=lambda: {**jsonl.histogram_obj(hist), **fields})

    def stacks(self, profile: StackProfile, *, text: Callable[[StackProfile], Text],
               folded: Callable[[StackProfile], Text], tool: str | None = None) -> None:
        """A stack profile: the tool's text, its folded lines, or in JSON one
        "stack" object per stack, biggest first, after a "profile" line naming
        `tool` when given. The loss follows through `loss()`."""
        def objects() -> list[dict]:
            head = [jsonl.profile_obj(tool, profile)] if tool else []
            return head + sorted(jsonl.stacks_objs(profile), key=lambda o: -o["value"])
        self.emit(text=lambda: text(profile), folded=lambda: folded(profile), json=objects)

    def events(self, rows: list[tuple], *, text: Callable[[list[tuple]], Iterable[str]],
               obj: Callable[[list[tuple]], Iterable[dict]],
               folded: Callable[[list[tuple]], Iterable[str]] | None = None) -> int:
        """A batch of events in one write, unflushed (the reader flushes once
        per poll): text(rows) gives lines, obj(rows) dicts that JSON marks
        "type": "event", folded(rows) a folded line per event where the tool
        has one. Returns the lines written."""
        return self.emit(text=lambda: text(rows),
                         json=lambda: [{"type": "event", **o} for o in obj(rows)],
                         folded=(lambda: folded(rows)) if folded else None, flush=False)

    def loss(self, loss: LossReport, **fields: Any) -> None:
        """The end of every run: in JSON a "loss" line (with `fields`, e.g. an
        event tool's counts), and in every form a warning on stderr naming
        what was not recorded."""
        self.emit(json=lambda: {**jsonl.loss_obj(loss), **fields})
        warning = loss_line(loss)
        if warning:
            print(warning, file=sys.stderr, flush=True)

    def opening(self, message: str) -> None:
        """BCC's opening line ("Sampling at 49 Hertz ..."), on stderr: the text
        form only, as BCC leaves it out of folded output."""
        print(message, file=sys.stderr, flush=True)


class _ForPrograms(Output):
    """A form read by programs: no lines for people, no opening line, never a
    screen redrawn in place."""

    def redraws(self) -> bool:
        return False

    def line(self, text: str = "") -> None:
        pass

    def opening(self, message: str) -> None:
        pass


class JsonOutput(_ForPrograms):
    """JSON lines: one object per line (each tool's schema in pytracekit/schemas)."""

    form = "json"

    def _lines_of(self, text: Text, json: Json, folded: Text) -> list[str]:
        return [jsonl.dumps(obj) for obj in _objects(json)]


class FoldedOutput(_ForPrograms):
    """Folded stacks (flamegraph.pl input); records without a folded form as text."""

    form = "folded"

    def _lines_of(self, text: Text, json: Json, folded: Text) -> list[str]:
        return _lines(folded) if folded is not None else _lines(text)


def chosen(*, json: bool = False, folded: bool = False) -> Output:
    """The output the command line asked for: one form, never two."""
    if json and folded:
        raise UsageError("--folded and --json exclude each other: choose one output")
    return JsonOutput() if json else FoldedOutput() if folded else Output()


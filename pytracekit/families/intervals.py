"""Per-interval tables for the summary tools that read and clear their result
maps (kmem, schedlat, mutexstat): with --interval, a timestamp line before
each text table and the interval's time and number on each JSON line; the
result maps drained entry by entry, so an update racing the read lands in
the next interval instead of being lost between a read and a clear.

Maps holding in-flight state (a wait started, a lock held) are never
drained: an event spanning a boundary is counted once, where it completes.
"""
from __future__ import annotations

from typing import Any, Callable

from ..collect.mapdrain import drain
from ..render.output import Output
from .periodic import run_periodic, timestamp
from ..engine.runner import Target


def entries(table: Any, clear: bool) -> list[tuple[Any, Any]]:
    """A map's entries: drained when `clear`, else just read."""
    return drain(table) if clear else list(table.items())


def stamped(obj: dict[str, Any], stamp: dict[str, Any]) -> dict[str, Any]:
    return {**obj, **stamp}


def run_interval_tables(target: Target, print_table: Callable[[dict[str, Any]], None], *,
                        duration: float | None, interval: float | None,
                        out: Output, poll: Callable[[int], None] | None = None) -> str:
    """Run until done; every `interval` seconds (when given) and once at the end
    (unless the last interval just ended it) call print_table(stamp), which
    prints the results since the previous call and clears them. `stamp` is
    {"time": "HH:MM:SS", "interval_no": n} with --interval (for JSON lines),
    else {}; text tables get a blank line and the time before them."""
    number = [0]

    def report() -> None:
        stamp: dict[str, Any] = {}
        if interval:
            number[0] += 1
            stamp = {"time": timestamp(), "interval_no": number[0]}
            out.line()
            out.line(stamp["time"])
        print_table(stamp)

    return run_periodic(target, report=lambda _final: report(), duration=duration,
                        interval=interval, count=None, poll=poll)

"""top's terminal UI (curses): refreshes in place, follows the window size.

Keys as in top: q quits, P sorts by %CPU, N by PID, T by TIME+, C by COMM,
H toggles threads. ncurses turns SIGWINCH into KEY_RESIZE, handled below.
The UI also ends when --duration is over or the watched command exits.

With `-- COMMAND` the terminal's input belongs to the command (as it would
without pytracekit): top reads no keys and leaves the terminal in its usual
line mode; it ends when the command exits or on Ctrl-C.
"""
from __future__ import annotations

import curses
import os
import sys
import time
from typing import Any

from ..render import top as render
from ..engine.runner import Target, ignore_stops, install_signal_handlers, signal_ready
from ..collect.cputime import shown_rows

SORT_KEYS = {ord("P"): "cpu", ord("N"): "pid", ord("T"): "time", ord("C"): "comm"}


def run_ui(session: Any, target: Target, *, delay: float, iterations: int | None,
           duration: float | None, threads: bool, sort: str) -> None:
    install_signal_handlers()
    try:
        curses.wrapper(_loop, session, target, delay, iterations, duration, threads, sort)
    except KeyboardInterrupt:
        pass
    ignore_stops()   # the run is over: as after run_until_done


def _loop(screen: Any, session: Any, target: Target, delay: float, iterations: int | None,
          duration: float | None, threads: bool, sort: str) -> None:
    try:
        curses.curs_set(0)
    except curses.error:
        pass    # a terminal that cannot hide its cursor shows it: harmless
    screen.timeout(100)
    if target.command:   # the command's stdin: no keys read, line mode as usual
        curses.nocbreak()
        curses.echo()
    signal_ready()
    target.release()
    refresh = None
    shown = 0
    started = time.monotonic()
    next_at = started + delay
    while True:
        if target.exited or (duration is not None and time.monotonic() - started >= duration):
            return
        if time.monotonic() >= next_at:
            refresh = session.refresh()
            shown += 1
            next_at += delay
            _draw(screen, session, refresh, threads, sort)
        elif refresh is None:
            _waiting(screen)
        key = _next_key(screen, target)
        if key in (ord("q"), ord("Q")):
            return
        if key in SORT_KEYS:
            sort = SORT_KEYS[key]
        elif key in (ord("H"), ord("h")):
            threads = not threads
        elif key == curses.KEY_RESIZE:
            curses.update_lines_cols()
            screen.clear()          # repaint everything at the new size
        else:
            if iterations is not None and shown >= iterations:
                return
            continue
        if refresh is not None:
            _draw(screen, session, refresh, threads, sort)


def _next_key(screen: Any, target: Target) -> int:
    """A key within 100 ms, or -1; never one meant for the command."""
    if not target.command:
        return screen.getch()
    size = os.get_terminal_size(sys.__stdout__.fileno())   # getch would see SIGWINCH
    if (size.lines, size.columns) != screen.getmaxyx():
        curses.resizeterm(size.lines, size.columns)
        return curses.KEY_RESIZE
    target.wait(0.1)
    return -1


def _waiting(screen: Any) -> None:
    screen.erase()
    _put(screen, 0, "top: collecting the first interval...")
    screen.refresh()


def _draw(screen: Any, session: Any, refresh: Any, threads: bool, sort: str) -> None:
    rows = shown_rows(refresh, threads, sort, session.pids())
    height, _width = screen.getmaxyx()
    lines = render.screen(refresh, rows, threads, max(0, height - 4))
    lines[1] = f"sort: {sort}  (P cpu, N pid, T time, C comm, H threads, q quit)"
    screen.erase()
    for y, line in enumerate(lines[:height]):
        _put(screen, y, line, curses.A_REVERSE if y == 2 else 0)
    screen.refresh()


def _put(screen: Any, y: int, text: str, attr: int = 0) -> None:
    _height, width = screen.getmaxyx()
    try:
        screen.addnstr(y, 0, text.ljust(width), max(0, width - 1), attr)
    except curses.error:
        pass   # the last cell of the window cannot be written

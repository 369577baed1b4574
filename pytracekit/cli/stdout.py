"""stdout that fails once, in one line: `| head`, a full disk, a closed descriptor.

For a run, `cli.ToolGroup.invoke` puts a `guarded()` stdout in place of sys.stdout. Its
first failed write raises `StdoutError` and everything written after it is
dropped, so the tool's `finally` blocks (summaries on stderr, detaching the
probes, stopping a command) run to the end and the one error reaches
`cli.main`: a reader that went away (EPIPE) ends the run quietly with status 0,
anything else (ENOSPC from `> /dev/full`, EBADF from `>&-`) is one line and
status 1.

StdoutError is not an OSError on purpose: BCC's ring-buffer callback turns an
EPIPE OSError into exit() inside a ctypes callback, where it is printed and
dropped ("Exception ignored") and the tool runs on.

A stdout closed before the run (`>&-`) is decided at the first write: a tool
that prints nothing to stdout (`record -o FILE`) runs normally; one that
prints fails with "stdout is closed". Meanwhile /dev/null holds descriptor 1,
close-on-exec, so no file or BPF map opened by the tool lands there and a
`-- COMMAND` still starts with its stdout closed.
"""
from __future__ import annotations

import contextlib
import errno
import io
import os
import select
import sys
from typing import Iterator

from ..errors import PytracekitError

STDOUT_FD = 1


class StdoutError(PytracekitError):
    """Writing to stdout failed; `reader_gone` for a closed pipe."""

    def __init__(self, err: int, strerror: str) -> None:
        if err == errno.EBADF:
            message = "cannot write the output: stdout is closed (redirect it to a file instead)"
        else:
            message = f"cannot write the output to stdout: {strerror}"
        super().__init__(message)
        self.errno = err

    @property
    def reader_gone(self) -> bool:
        return self.errno == errno.EPIPE


class _Descriptor(io.RawIOBase):
    """fd 1: the first failed write raises StdoutError, later writes vanish."""

    def __init__(self, closed_at_start: bool) -> None:
        super().__init__()
        self._closed_at_start = closed_at_start
        self.failed = False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return STDOUT_FD

    def isatty(self) -> bool:
        return not self._closed_at_start and os.isatty(STDOUT_FD)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        if self.failed or not size:   # click probes with write(b""): /dev/full fails it
            return size
        if self._closed_at_start:
            self.failed = True
            raise StdoutError(errno.EBADF, os.strerror(errno.EBADF))
        # All of it: unbuffered (PYTHONUNBUFFERED, -u) the TextIOWrapper above
        # ignores a short count, and a pipe takes part of a write when it is
        # non-blocking and full, or when a signal interrupts a blocked write.
        done = 0
        while done < size:
            try:
                done += os.write(STDOUT_FD, view[done:])
            except BlockingIOError:       # a non-blocking pipe someone handed us
                select.select([], [STDOUT_FD], [])
            except OSError as exc:
                self.failed = True
                raise StdoutError(exc.errno, exc.strerror) from None
        return size


def _closed_at_start() -> bool:
    try:
        os.fstat(STDOUT_FD)
        return False
    except OSError:
        return True


@contextlib.contextmanager
def guarded() -> Iterator[None]:
    """sys.stdout guarded for the block (left alone when it is not fd 1, as
    under a test harness capturing output)."""
    original = sys.stdout
    closed = _closed_at_start()
    if not closed and (original is None or original is not sys.__stdout__):
        yield
        return
    if closed:
        placeholder = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        if placeholder != STDOUT_FD:
            os.dup2(placeholder, STDOUT_FD, inheritable=False)
            os.close(placeholder)
    else:
        original.flush()
    # As buffered as the stdout it replaces (PYTHONUNBUFFERED / -u: not at all).
    raw = _Descriptor(closed)
    unbuffered = original is not None and not isinstance(original.buffer, io.BufferedWriter)
    sys.stdout = io.TextIOWrapper(
        raw if unbuffered else io.BufferedWriter(raw),
        write_through=unbuffered,
        encoding=getattr(original, "encoding", None) or "utf-8",
        # Not "strict": a path that is not UTF-8 (`-- $'\xff'`) prints as \udcff
        errors="backslashreplace",
        line_buffering=getattr(original, "line_buffering", False))
    try:
        yield
    finally:
        guard, sys.stdout = sys.stdout, original
        with contextlib.suppress(StdoutError):   # reported already, or dropped
            guard.flush()

"""A compile that blocks until the test lets it go: a private cache
(PYTRACEKIT_CACHE) whose include tree has a FIFO for a header every compile
reads (include/generated/autoconf.h, through the kconfig.h BCC forces in), so
clang blocks reading it. `compiling()` returns once clang has it open, with
the write end: closing that gives clang an empty file."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from conftest import wait_until


def fifo_header(cache: Path) -> Path:
    """Build the include tree in `cache` (in this process) and make its
    autoconf.h a FIFO (root's, 0644: what the cache trusts)."""
    from pytracekit.kernel import headers
    saved = os.environ.get("PYTRACEKIT_CACHE")
    os.environ["PYTRACEKIT_CACHE"] = str(cache)
    try:
        header = headers.include_tree().source / "include" / "generated" / "autoconf.h"
    finally:
        if saved is None:
            del os.environ["PYTRACEKIT_CACHE"]
        else:
            os.environ["PYTRACEKIT_CACHE"] = saved
    header.unlink()
    os.mkfifo(header, 0o644)
    assert stat.S_ISFIFO(os.stat(header).st_mode)
    return header


def compiling(header: Path, proc, timeout: float = 120) -> int:
    """Wait until a compile has the FIFO open (a writer may open only then);
    the writer's fd, which the caller closes."""
    writer = -1

    def opened() -> bool:
        nonlocal writer
        try:
            writer = os.open(header, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            assert exc.errno == errno.ENXIO, exc
        return writer >= 0
    assert wait_until(opened, timeout=timeout), f"never compiled (status {proc.poll()})"
    return writer

"""A memory cgroup with a small limit for tests that need memory pressure
(reclaim, OOM kills) without touching the host: cgroup v2 where its memory
controller is enabled, else v1's memory hierarchy."""
from __future__ import annotations

import contextlib
import itertools
import os
import time
from pathlib import Path

import pytest

V1 = Path("/sys/fs/cgroup/memory")
V2 = Path("/sys/fs/cgroup")
_made = itertools.count()


def _base() -> tuple[Path, str]:
    if (V2 / "cgroup.controllers").exists() and \
            "memory" in (V2 / "cgroup.subtree_control").read_text().split():
        return V2, "memory.max"
    if (V1 / "memory.limit_in_bytes").exists():
        return V1, "memory.limit_in_bytes"
    pytest.skip("no memory cgroup controller (v1 or v2) to limit a test's memory")


@contextlib.contextmanager
def memory_cgroup(limit_bytes: int, name: str = "ptk-test"):
    """A fresh cgroup limited to `limit_bytes`; yields the argv prefix that
    runs a command inside it (`sh -c 'echo $$ > procs; exec "$@"'`)."""
    base, limit_file = _base()
    path = base / f"{name}-{os.getpid()}-{next(_made)}"   # one left behind never blocks the next
    path.mkdir()
    try:
        (path / limit_file).write_text(str(limit_bytes))
        swap = path / ("memory.swap.max" if limit_file == "memory.max"
                       else "memory.memsw.limit_in_bytes")
        if swap.exists():
            with contextlib.suppress(OSError):
                swap.write_text("0" if limit_file == "memory.max" else str(limit_bytes))
        yield ["sh", "-c", f'echo $$ > {path}/cgroup.procs && exec "$@"', "sh"]
    finally:
        for _ in range(100):   # its processes are gone once they are reaped; wait for that
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.05)

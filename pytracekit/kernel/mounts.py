"""Where tracefs is, mounting it (and debugfs) when absent: all that a program
loaded from the cache needs of tracefs (BCC reads the path at import), without
tracefs.py's parsing of tracepoint formats (a cost at every start otherwise)."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ..errors import NotSupportedError, PrivilegeError

CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def _mounted(path: Path) -> bool:
    try:
        return (path / "events").is_dir()
    except PermissionError:     # tracefs is mode 0700: not root
        raise PrivilegeError(f"reading tracepoints in {path} needs root: run pytracekit "
                             "with sudo") from None


def _mount(fstype: str, target: Path) -> bool:
    import subprocess   # here: tracefs is mounted already at nearly every start
    try:
        subprocess.run(["mount", "-t", fstype, "nodev", str(target)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return True
    except (OSError, subprocess.CalledProcessError):
        return False


@lru_cache(maxsize=1)
def tracefs_root() -> Path:
    """The tracefs mount point, mounting tracefs (and debugfs) when absent.

    BCC's Python module picks its tracefs path at import time, so this must
    run before `import bcc`.
    """
    for path in CANDIDATES:
        if _mounted(path):
            break
    else:
        if os.geteuid() != 0 or not _mount("tracefs", CANDIDATES[0]):
            raise NotSupportedError(
                "tracefs is not mounted and could not be mounted: run as root, or "
                "`mount -t tracefs nodev /sys/kernel/tracing`")
    # BCC reads some files (kprobe blacklist) through debugfs; mount it if we can.
    debug = Path("/sys/kernel/debug")
    if os.geteuid() == 0 and debug.is_dir() and not any(debug.iterdir()):
        _mount("debugfs", debug)
    for path in CANDIDATES:
        if _mounted(path):
            return path
    raise NotSupportedError("tracefs mounted but has no events directory")

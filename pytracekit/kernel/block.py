"""Block devices for the block tools: names <-> the kernel's dev_t as block
tracepoints report it, and the rwbs flags string."""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ..errors import NotFoundError

SYS_BLOCK = Path("/sys/block")
MINOR_BITS = 20                      # the kernel's dev_t: major << 20 | minor


def disk_option():
    import click
    return click.option("-d", "--disk", default=None, help="Trace this disk only (e.g. vda).")


def kernel_dev(major: int, minor: int) -> int:
    return (major << MINOR_BITS) | minor


def disk_dev(name: str) -> int:
    """`vda` or `/dev/vda` -> the dev_t tracepoints carry."""
    base = os.path.basename(name)
    try:
        major, minor = (SYS_BLOCK / base / "dev").read_text().strip().split(":")
    except OSError:
        known = ", ".join(sorted(p.name for p in SYS_BLOCK.iterdir())) if SYS_BLOCK.exists() else ""
        raise NotFoundError(f"no block device {name!r} (this machine has: {known})") from None
    return kernel_dev(int(major), int(minor))


@lru_cache(maxsize=256)
def dev_name(dev: int) -> str:
    """The kernel dev_t -> `vda`, or `MAJ:MIN` when sysfs does not know it."""
    major, minor = dev >> MINOR_BITS, dev & ((1 << MINOR_BITS) - 1)
    try:
        for line in Path(f"/sys/dev/block/{major}:{minor}/uevent").read_text().splitlines():
            if line.startswith("DEVNAME="):
                return line.split("=", 1)[1]
    except OSError:
        pass
    return f"{major}:{minor}"


def rwbs(label: int) -> str:
    """The rwbs flags (R read, W write, S sync, F flush, M meta ...) packed in a u64."""
    return label.to_bytes(8, "little").split(b"\0", 1)[0].decode(errors="replace")

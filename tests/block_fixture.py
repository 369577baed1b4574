"""A private loop block device for the block tools' tests: only the test's own
direct I/O reaches it, so request counts are exact. Its backing file lives on
the root disk's filesystem (/var/tmp)."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

BLOCK = 64 * 1024


@dataclass
class LoopDisk:
    name: str            # loop3
    path: str            # /dev/loop3
    dd: str              # a copy of dd with a unique name: its comm marks our I/O

    @property
    def comm(self) -> str:
        return os.path.basename(self.dd)[:15]

    def write(self, count: int, size: int = BLOCK, seek: int = 0) -> None:
        """`count` O_DIRECT writes of `size` bytes: one block request each."""
        self._dd(f"if=/dev/zero", f"of={self.path}", "oflag=direct", f"bs={size}",
                 f"count={count}", f"seek={seek}")

    def read(self, count: int, size: int = BLOCK) -> None:
        self._dd(f"if={self.path}", "of=/dev/null", "iflag=direct", f"bs={size}",
                 f"count={count}")

    def _dd(self, *args: str) -> None:
        subprocess.run([self.dd, *args, "status=none"], check=True)


@pytest.fixture(scope="module")
def loop_disk(tmp_path_factory):
    if os.geteuid() != 0 or not shutil.which("losetup"):
        pytest.skip("needs root and losetup for a private loop block device")
    backing = Path("/var/tmp") / f"pytracekit-loop-{os.getpid()}.img"
    with open(backing, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    res = subprocess.run(["losetup", "-f", "--show", str(backing)], capture_output=True, text=True)
    if res.returncode != 0:
        backing.unlink()
        pytest.skip(f"no loop device here: {res.stderr.strip()}")
    path = res.stdout.strip()
    dd = tmp_path_factory.mktemp("bin") / f"ptkdd{os.getpid() % 100000}"
    shutil.copy("/usr/bin/dd", dd)
    try:
        yield LoopDisk(os.path.basename(path), path, str(dd))
    finally:
        subprocess.run(["losetup", "-d", path], check=False)
        backing.unlink()

"""A function's instructions as text, from binutils' objdump run on that
address range only (`--start-address/--stop-address`: fast on any binary)."""
from __future__ import annotations

import re
import shutil
import subprocess

from .textsafe import printable

OBJDUMP_TIMEOUT_S = 60
_LINE = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")


class NoDisassembler(Exception):
    """objdump is missing or failed: the message says which."""


def disassemble(path: str, start: int, end: int) -> dict[int, str]:
    """vaddr -> instruction text (AT&T syntax, C++ names demangled) for [start, end)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise NoDisassembler("objdump not found (install binutils)")
    try:
        run = subprocess.run([objdump, "-d", "-w", "-C", "--no-show-raw-insn",
                              f"--start-address={start:#x}", f"--stop-address={end:#x}",
                              "--", path], capture_output=True, timeout=OBJDUMP_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NoDisassembler(f"objdump failed on {path}: {exc}") from None
    if run.returncode != 0:
        first = run.stderr.decode(errors="replace").strip().splitlines()[:1]
        raise NoDisassembler(f"objdump failed on {path}: {first[0] if first else run.returncode}")
    out: dict[int, str] = {}
    for line in run.stdout.decode(errors="replace").splitlines():
        m = _LINE.match(line)
        if m:
            # symbol names in operands come from the file: no control characters
            out[int(m.group(1), 16)] = printable(" ".join(m.group(2).split("\t")).rstrip())
    return out

"""A function's instructions as text, from binutils' objdump on that address
range only (`--start-address/--stop-address`). objdump still reads the whole
code section, 1.3 s for chromium's 297 MB; for files that large the function's
bytes alone are disassembled (`-b binary --adjust-vma`), without the
`<symbol+0x..>` names of branch targets."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile

from ..textsafe import printable

OBJDUMP_TIMEOUT_S = 60
WHOLE_FILE_LIMIT = 64 << 20   # larger files: disassemble the function's bytes only
_LINE = re.compile(r"^\s*([0-9a-f]+):\t(.*)$")


class NoDisassembler(Exception):
    """objdump is missing or failed: the message says which."""


def disassemble(path: str, start: int, end: int, code: bytes | None = None) -> dict[int, str]:
    """vaddr -> instruction text (AT&T syntax, C++ names demangled) for [start, end).
    `code`: the function's bytes, used instead of the file when it is large."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise NoDisassembler("objdump not found (install binutils)")
    try:
        large = os.path.getsize(path) > WHOLE_FILE_LIMIT
    except OSError:
        large = False
    if code is not None and large:
        with tempfile.NamedTemporaryFile(prefix="pytracekit-annotate-") as f:
            f.write(code)
            f.flush()
            return _run([objdump, "-D", "-b", "binary", "-m", "i386:x86-64",
                         f"--adjust-vma={start:#x}", "-w", "--no-show-raw-insn", "--", f.name],
                        path)
    return _run([objdump, "-d", "-w", "-C", "--no-show-raw-insn", f"--start-address={start:#x}",
                 f"--stop-address={end:#x}", "--", path], path)


def _run(argv: list[str], path: str) -> dict[int, str]:
    try:
        run = subprocess.run(argv, capture_output=True, timeout=OBJDUMP_TIMEOUT_S,
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

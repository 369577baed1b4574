"""Names from the traced system, made safe to print and to write.

Symbol names (ELF files, perf maps, kallsyms), comm and paths come from
programs anyone can write, and pytracekit prints them on root's terminal and
into files. A control character (C0, DEL, C1) in them could move the cursor,
clear the screen or forge output lines, so each becomes `\\xNN`. Names enter
in two places: model.Frame (every symbolized frame) and `cstr` (every C
string from a BPF event or map: comm, paths, arguments)."""
from __future__ import annotations

import re

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character written as \\xNN."""
    if text.isprintable():      # the common case, in C
        return text
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cstr(raw: bytes) -> str:
    """A NUL-terminated C char array as printable text (bytes after the NUL are junk)."""
    end = raw.find(0)
    return printable((raw if end < 0 else raw[:end]).decode(errors="replace"))

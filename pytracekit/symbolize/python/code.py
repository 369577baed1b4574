"""(code object address, instruction offset) -> `qualname (file:line)`, from
the process's memory, cached per (pid, code address).

A code address is only meaningful while the object lives: a freed one can be
reused by another function. So each cache entry keeps a fingerprint (the
object's type, name, file and line-table pointers and first line, one read)
that `check()` compares again when the address shows up in a new stack;
a different fingerprint means a different code object and it is read anew.

A stack from BPF also says which object each frame ran (`ident`: its line
table's address folded, bpf/ptk_python.h PY_CODE_IDENT). A stack sampled just
before its code object is freed (a script's <module> as it ends: malloc's free
list overwrites the type) is read after the free: the entry read while the
object lived names it when the idents agree, and an address that holds
another code object by then is not taken for the sampled one.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Optional

from .linetable import Ranges, line_in, ranges_for
from .memory import ProcessMemory, read_bytes, read_str
from .runtime import PyProcess


LINE_TABLES_KEPT = 16384   # decoded line tables (then started afresh)
# (minor version, table, first line) -> decoded ranges, shared by every
# process: a machine's short Python processes (test runs) run the same code,
# and decoding was most of a system-wide profile's own CPU under their churn
_TABLES: dict[tuple[int, bytes, int], Ranges] = {}


@dataclass(frozen=True)
class CodeInfo:
    name: str          # co_qualname (3.11+), else co_name
    filename: str
    firstlineno: int
    linetable: bytes
    fingerprint: bytes
    ident: int         # code_ident() of the object read

    @property
    def basename(self) -> str:
        return self.filename.rsplit("/", 1)[-1]


def code_ident(linetable_pointer: int) -> int:
    """PY_CODE_IDENT of bpf/ptk_python.h: the line table's address folded to
    the 31 bits a frame's flags have beside PY_FRAME_BOUNDARY (bit 0)."""
    return (linetable_pointer ^ (linetable_pointer >> 32)) & 0xFFFFFFFE


class CodeReader:
    """Names and lines of one process's code objects."""

    def __init__(self, proc: PyProcess) -> None:
        self.proc = proc
        self.layout = proc.layout
        self.mem = ProcessMemory(proc.pid)
        self.codes: dict[int, Optional[CodeInfo]] = {}
        self._minor = proc.version[1]
        self._ranges = ranges_for(self._minor)
        L = self.layout
        fields = [L.object_type, L.code_filename, L.code_name, L.code_linetable,
                  L.code_firstlineno] + ([L.code_qualname] if L.code_qualname else [])
        self._head = max(fields) + 8   # one read covers every field used

    def _fingerprint(self, head: bytes) -> bytes:
        L = self.layout
        parts = [L.object_type, L.code_filename, L.code_name, L.code_linetable]
        return b"".join(head[o:o + 8] for o in parts) + head[L.code_firstlineno:L.code_firstlineno + 4]

    def _read(self, code: int) -> Optional[CodeInfo]:
        L = self.layout
        try:
            head = self.mem.read(code, self._head)

            def pointer(offset: int) -> int:
                return struct.unpack_from("<Q", head, offset)[0]

            if self.proc.code_type and pointer(L.object_type) != self.proc.code_type:
                return None    # not (or no longer) a code object
            name = read_str(self.mem, L, pointer(L.code_qualname or L.code_name))
            filename = read_str(self.mem, L, pointer(L.code_filename))
            table = read_bytes(self.mem, L, pointer(L.code_linetable))
        except OSError:
            return None
        if name is None or filename is None or table is None:
            return None
        first = struct.unpack_from("<i", head, L.code_firstlineno)[0]
        return CodeInfo(name, filename, first, table, self._fingerprint(head),
                        code_ident(pointer(L.code_linetable)))

    def info(self, code: int) -> Optional[CodeInfo]:
        """The cached code object at `code`, read on first use."""
        if code not in self.codes:
            self.codes[code] = self._read(code)
        return self.codes[code]

    def check(self, code: int) -> Optional[CodeInfo]:
        """Like info(), but re-validates a cached entry against the live object
        (when the address is seen in a new stack: it may have been reused)."""
        cached = self.codes.get(code)
        if cached is not None:
            try:
                head = self.mem.read(code, self._head)
            except OSError:
                return cached          # gone: keep what we read while it lived
            if self._fingerprint(head) == cached.fingerprint:
                return cached
        # a different object now, or none was there when last read (a freed one
        # whose address the code object seen now reuses): read it anew
        self.codes.pop(code, None)
        return self.info(code)

    def check_many(self, codes: list[int],
                   idents: Optional[list[int]] = None) -> list[Optional[CodeInfo]]:
        """check() of each code address, the cached ones re-validated with one
        read for them all (a new stack's frames: ~30 reads a stack otherwise).
        `idents`: BPF's code_ident() of each frame (0: not known); a frame is
        named only by an object with its ident, the one read before if the
        address holds another, or nothing, by now (None: gone)."""
        cached = [c for c in dict.fromkeys(codes) if self.codes.get(c) is not None]
        heads = dict(zip(cached, self.mem.read_many(cached, self._head)))
        out = []
        for code, ident in zip(codes, idents or [0] * len(codes)):
            info = self.codes.get(code)
            head = heads.get(code)
            if info is not None and ident in (0, info.ident) and (
                    head is None or self._fingerprint(head) == info.fingerprint):
                out.append(info)   # unchanged, or gone: what was read while it lived
                continue
            now = self.check(code)
            if ident == 0 or (now is not None and now.ident == ident):
                out.append(now)
            elif info is not None and info.ident == ident:
                out.append(info)   # the one sampled, freed (or replaced) since
                if now is None:    # nothing else there yet: keep its name
                    self.codes[code] = info
            else:
                out.append(None)
        return out

    def line(self, info: CodeInfo, offset: int) -> Optional[int]:
        key = (self._minor, info.linetable, info.firstlineno)
        ranges = _TABLES.get(key)
        if ranges is None:
            if len(_TABLES) >= LINE_TABLES_KEPT:
                _TABLES.clear()
            ranges = _TABLES[key] = self._ranges(info.linetable, info.firstlineno)
        return line_in(ranges, max(offset, 0))

    def describe(self, code: int, offset: int) -> Optional[str]:
        """`qualname (file.py:LINE)`, or None when the code object cannot be read."""
        info = self.info(code)
        if info is None:
            return None
        line = self.line(info, offset)
        return f"{info.name} ({info.basename}:{line if line is not None else '?'})"

    def close(self) -> None:
        self.mem.close()

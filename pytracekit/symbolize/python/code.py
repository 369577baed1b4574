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

from . import layouts as pl
from .linetable import Ranges, line_in, ranges_for
from .memory import MAX_BYTES, MAX_STRING, ProcessMemory, read_bytes, read_str
from .runtime import PyProcess


LINE_TABLES_KEPT = 16384   # decoded line tables (then started afresh)
# bytes read at once from the start of a code object's name, file name and line
# table objects: their headers and, mostly, their contents (one read for all)
OBJECT_BLOCK = 256
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
    fingerprint: tuple
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
        # the fingerprint's fields (type, file name, name, line table pointers,
        # first line) unpacked in one call
        self._fp = _fields_struct([(L.object_type, "Q"), (L.code_filename, "Q"),
                                   (L.code_name, "Q"), (L.code_linetable, "Q"),
                                   (L.code_firstlineno, "i")])

    def _fingerprint(self, head: bytes) -> tuple:
        return self._fp.unpack_from(head)

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

    def _read_batch(self, codes: list[int], heads: dict[int, bytes]) -> list[Optional[CodeInfo]]:
        """_read() of each code, in three reads for them all where it can: the
        objects' heads (those not in `heads`), the first OBJECT_BLOCK bytes of
        every name, file name and line table object they point to, and the
        rest of the longer ones. Anything unusual is read alone by _read()."""
        L = self.layout
        missing = [c for c in codes if c not in heads]
        heads = {**heads, **dict(zip(missing, self.mem.read_many(missing, self._head)))}
        wanted: dict[int, None] = {}
        pointers: dict[int, tuple[int, int, int]] = {}
        for code in codes:
            head = heads.get(code)
            if head is None:
                continue
            ptrs = tuple(struct.unpack_from("<Q", head, o)[0]
                         for o in (L.code_qualname or L.code_name, L.code_filename,
                                   L.code_linetable))
            if self.proc.code_type and \
                    struct.unpack_from("<Q", head, L.object_type)[0] != self.proc.code_type:
                continue
            pointers[code] = ptrs
            wanted.update(dict.fromkeys(ptrs))
        objs = list(wanted)
        blocks = dict(zip(objs, self.mem.read_many(objs, OBJECT_BLOCK)))
        # (object, is str) -> (start, size, decoding) of its contents
        spans = {}
        for code, (name, filename, table) in pointers.items():
            for obj, is_str in ((name, True), (filename, True), (table, False)):
                if (obj, is_str) not in spans:
                    block = blocks.get(obj)
                    spans[(obj, is_str)] = None if block is None else \
                        (_str_span(L, block) if is_str else _bytes_span(L, block))
        rest = [(obj + start, size) for (obj, _), span in spans.items() if span
                for start, size, _ in (span,) if start + size > OBJECT_BLOCK]
        more = dict(zip(rest, self.mem.read_ranges(rest)))

        def contents(obj: int, is_str: bool):
            span = spans.get((obj, is_str))
            if span is None:
                return None
            start, size, encoding = span
            raw = blocks[obj][start:start + size] if start + size <= OBJECT_BLOCK \
                else more.get((obj + start, size))
            if raw is None:
                return None
            return raw.decode(encoding, "replace") if encoding else raw

        out = []
        for code in codes:
            ptrs = pointers.get(code)
            info = None
            if ptrs is not None:
                name, filename, table = (contents(ptrs[0], True), contents(ptrs[1], True),
                                         contents(ptrs[2], False))
                if name is not None and filename is not None and table is not None:
                    head = heads[code]
                    info = CodeInfo(name, filename,
                                    struct.unpack_from("<i", head, L.code_firstlineno)[0],
                                    table, self._fingerprint(head), code_ident(ptrs[2]))
            out.append(info if info is not None else self._read(code))
        return out

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
        """check() of each code address: the cached ones re-validated with one
        read for them all (a new stack's frames: ~30 reads a stack otherwise),
        the new or changed ones read together (_read_batch).
        `idents`: BPF's code_ident() of each frame (0: not known); a frame is
        named only by an object with its ident, the one read before if the
        address holds another, or nothing, by now (None: gone)."""
        unique = list(dict.fromkeys(codes))
        now: dict[int, Optional[CodeInfo]] = {}   # what each address holds by now
        if idents:
            # An address whose every frame here has the ident of the object
            # read there before is that object, taken without reading its head
            # again: one with the same address and the same line table's address
            # is not told apart by BPF either (its frames hash to the same stack)
            same: dict[int, bool] = {}
            for code, ident in zip(codes, idents):
                info = self.codes.get(code)
                same[code] = same.get(code, True) and ident != 0 and info is not None \
                    and info.ident == ident
            now = {code: self.codes[code] for code, ok in same.items() if ok}
        cached = [c for c in unique if c not in now and self.codes.get(c) is not None]
        heads = dict(zip(cached, self.mem.read_many(cached, self._head)))
        fresh, fresh_heads = [], {}
        for code in unique:
            if code in now:
                continue
            info = self.codes.get(code)
            head = heads.get(code)
            if info is not None and (head is None or self._fingerprint(head) == info.fingerprint):
                now[code] = info   # unchanged, or gone: what was read while it lived
            else:
                fresh.append(code)   # new, changed, or unreadable when last read
                if head is not None:
                    fresh_heads[code] = head
        before = {code: self.codes.get(code) for code in fresh}
        for code, info in zip(fresh, self._read_batch(fresh, fresh_heads) if fresh else ()):
            self.codes[code] = now[code] = info
        out = []
        for code, ident in zip(codes, idents or [0] * len(codes)):
            info = now[code]
            if ident == 0 or (info is not None and info.ident == ident):
                out.append(info)
                continue
            old = before.get(code)
            if old is not None and old.ident == ident:
                out.append(old)    # the one sampled, freed (or replaced) since
                if info is None:   # nothing else there yet: keep its name
                    self.codes[code] = old
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


def _fields_struct(fields: list[tuple[int, str]]) -> struct.Struct:
    """A struct that unpacks these (offset, format char) fields of a buffer, in
    offset order (pad bytes skip what lies between)."""
    fmt, pos = "<", 0
    for offset, char in sorted(fields):
        fmt += f"{offset - pos}x{char}" if offset > pos else char
        pos = offset + struct.calcsize("<" + char)
    return struct.Struct(fmt)


def _str_span(L: pl.PyLayout, block: bytes) -> Optional[tuple[int, int, str]]:
    """(start, size, encoding) of a compact str object's text from its first
    bytes (memory.read_str's rules), None when it is not one we read."""
    state = struct.unpack_from("<I", block, L.unicode_state)[0]
    kind = (state >> pl.UNICODE_KIND_SHIFT) & pl.UNICODE_KIND_MASK
    compact = (state >> pl.UNICODE_COMPACT_BIT) & 1
    length = struct.unpack_from("<Q", block, L.unicode_length)[0]
    if not compact or kind not in (1, 2, 4) or length > MAX_STRING:
        return None
    if (state >> pl.UNICODE_ASCII_BIT) & 1:
        return L.unicode_ascii_data, length, "ascii"
    return L.unicode_compact_data, length * kind, {1: "latin-1", 2: "utf-16-le",
                                                   4: "utf-32-le"}[kind]


def _bytes_span(L: pl.PyLayout, block: bytes) -> Optional[tuple[int, int, str]]:
    """(start, size, "") of a bytes object's contents (memory.read_bytes's rules)."""
    size = struct.unpack_from("<Q", block, L.bytes_size)[0]
    return None if size > MAX_BYTES else (L.bytes_data, size, "")

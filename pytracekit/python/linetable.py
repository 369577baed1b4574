"""Line numbers from a code object's line table, per CPython version.

`offset` is always the instruction's byte offset from the start of the
bytecode (what the BPF walker records, after `code_offset()`); the result is
None where the table says the instruction has no line. Formats (CPython's
Objects/lnotab_notes.txt of each version):
  3.8, 3.9  co_lnotab:   (address delta, signed line delta) byte pairs
  3.10      co_linetable: (byte length, signed line delta, -128 = no line) pairs
  3.11+     location table: entries of a header byte 1CCCCLLL (code C, L+1 code
            units) and a code-dependent body; lines are all this needs.
"""
from __future__ import annotations

from typing import Callable, Optional

CODEUNIT = 2   # bytes per _Py_CODEUNIT


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


def line_lnotab(table: bytes, firstlineno: int, offset: int) -> int:
    """3.8/3.9: the line of the last entry whose address is <= offset."""
    line, addr = firstlineno, 0
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        if addr > offset:
            break
        line += _signed(table[i + 1])
    return line


def line_310(table: bytes, firstlineno: int, offset: int) -> Optional[int]:
    """3.10: ranges [start, start + length) in bytes, each with a line delta."""
    line, start = firstlineno, 0
    for i in range(0, len(table) - 1, 2):
        end = start + table[i]
        delta = _signed(table[i + 1])
        if delta != -128:
            line += delta
        if start <= offset < end:
            return None if delta == -128 else line
        start = end
    return None


class _Reader:
    """The location table's varints: 6-bit groups, bit 6 = more follow."""

    def __init__(self, table: bytes) -> None:
        self.table, self.pos = table, 0

    def byte(self) -> int:
        b = self.table[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        b = self.byte()
        value, shift = b & 63, 6
        while b & 64:
            b = self.byte()
            value |= (b & 63) << shift
            shift += 6
        return value

    def svarint(self) -> int:
        v = self.varint()
        return -(v >> 1) if v & 1 else v >> 1


def line_311(table: bytes, firstlineno: int, offset: int) -> Optional[int]:
    """3.11-3.13 location table (codes: 15 none, 14 long, 13 no column,
    10-12 one-line with delta code-10, 0-9 short form on the same line)."""
    unit = offset // CODEUNIT
    r, addr, line = _Reader(table), 0, firstlineno
    try:
        while r.pos < len(table):
            head = r.byte()
            code, length = (head >> 3) & 15, (head & 7) + 1
            this: Optional[int] = line
            if code == 15:
                this = None
            elif code == 14:
                line += r.svarint()
                this = line
                r.varint(), r.varint(), r.varint()   # end line delta, columns
            elif code == 13:
                line += r.svarint()
                this = line
            elif code >= 10:
                line += code - 10
                this = line
                r.pos += 2                           # start and end column
            else:
                r.pos += 1                           # column byte
            if addr <= unit < addr + length:
                return this
            addr += length
    except IndexError:      # a truncated table: no answer rather than a wrong one
        return None
    return None


def decoder_for(minor: int) -> Callable[[bytes, int, int], Optional[int]]:
    """The line decoder of CPython 3.<minor> (3.8-3.13)."""
    if minor < 10:
        return line_lnotab
    return line_310 if minor == 10 else line_311

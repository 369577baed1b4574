"""Line numbers from a code object's line table, per CPython version.

`offset` is always the instruction's byte offset from the start of the
bytecode (what the BPF walker records, after `code_offset()`); the result is
None where the table says the instruction has no line. Formats (CPython's
Objects/lnotab_notes.txt of each version):
  3.8, 3.9  co_lnotab:   (address delta, signed line delta) byte pairs
  3.10      co_linetable: (byte length, signed line delta, -128 = no line) pairs
  3.11+     location table: entries of a header byte 1CCCCLLL (code C, L+1 code
            units) and a code-dependent body; lines are all this needs.
Each format is decoded whole into `Ranges` (start offsets, end offsets, lines) once;
a line is then a bisect, so a code object's table is decoded once per process
however many of its offsets are sampled (code.CodeReader caches the Ranges).
"""
from __future__ import annotations

import bisect
from typing import Callable, Optional

CODEUNIT = 2   # bytes per _Py_CODEUNIT


def _signed(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


# (starts, ends, lines) in bytes, sorted by start; a line of None: no line there
Ranges = tuple[list[int], list[int], list[Optional[int]]]
_NO_END = 1 << 62


def ranges_lnotab(table: bytes, firstlineno: int) -> Ranges:
    """3.8/3.9: from each entry's address on, its line (until a later entry's)."""
    starts, lines, line, addr = [0], [firstlineno], firstlineno, 0
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        line += _signed(table[i + 1])
        starts.append(addr)
        lines.append(line)
    return starts, [_NO_END] * len(starts), lines


def ranges_310(table: bytes, firstlineno: int) -> Ranges:
    """3.10: ranges [start, start + length) in bytes, each with a line delta."""
    starts, ends, lines, line, start = [], [], [], firstlineno, 0
    for i in range(0, len(table) - 1, 2):
        end = start + table[i]
        delta = _signed(table[i + 1])
        if delta != -128:
            line += delta
        if end > start:
            starts.append(start)
            ends.append(end)
            lines.append(None if delta == -128 else line)
        start = end
    return starts, ends, lines


def _varint(table: bytes, pos: int) -> tuple[int, int]:
    """The location table's varints: 6-bit groups, bit 6 = more follow."""
    b = table[pos]
    pos += 1
    value, shift = b & 63, 6
    while b & 64:
        b = table[pos]
        pos += 1
        value |= (b & 63) << shift
        shift += 6
    return value, pos


def ranges_311(table: bytes, firstlineno: int) -> Ranges:
    """3.11-3.13 location table (codes: 15 none, 14 long, 13 no column,
    10-12 one-line with delta code-10, 0-9 short form on the same line);
    a truncated table gives the entries before the cut (no answer past it
    rather than a wrong one)."""
    starts, ends, lines = [], [], []
    pos, addr, line, n = 0, 0, firstlineno, len(table)
    try:
        while pos < n:
            head = table[pos]
            pos += 1
            code, length = (head >> 3) & 15, ((head & 7) + 1) * CODEUNIT
            this: Optional[int] = line
            if code == 15:
                this = None
            elif code == 14 or code == 13:
                v, pos = _varint(table, pos)
                line += -(v >> 1) if v & 1 else v >> 1
                this = line
                if code == 14:      # end line delta, columns
                    for _ in range(3):
                        _, pos = _varint(table, pos)
            elif code >= 10:
                line += code - 10
                this = line
                pos += 2                           # start and end column
            else:
                pos += 1                           # column byte
            if pos > n:
                break              # the entry's body is cut off
            starts.append(addr)
            ends.append(addr + length)
            lines.append(this)
            addr += length
    except IndexError:
        pass
    return starts, ends, lines


def line_in(ranges: Ranges, offset: int) -> Optional[int]:
    """The line at byte offset `offset` of decoded ranges (None: no line)."""
    starts, ends, lines = ranges
    i = bisect.bisect_right(starts, offset) - 1
    return lines[i] if i >= 0 and offset < ends[i] else None


def ranges_for(minor: int) -> Callable[[bytes, int], Ranges]:
    """The line-table decoder of CPython 3.<minor> (3.8-3.13)."""
    if minor < 10:
        return ranges_lnotab
    return ranges_310 if minor == 10 else ranges_311


def decoder_for(minor: int) -> Callable[[bytes, int, int], Optional[int]]:
    """(table, firstlineno, offset) -> line, decoding the table each call."""
    ranges = ranges_for(minor)
    return lambda table, first, offset: line_in(ranges(table, first), offset)

"""Compact unwind tables: one module's CFI as sorted 8-byte rows for BPF.

A row says how to find the caller's frame from any pc at or after its `pc`
(up to the next row): `u32 pc` (link-time vaddr), `u16 cfa_off8` (CFA offset
/ 8), `u8 kind`, `u8 rbp_off8` (rbp saved at CFA - 8*n; 0 = unchanged). The
return address is always at CFA-8 (rows where it is not become NONE).
99.9% of Debian's rows fit (docs/design/unwinding.md §3.1). Kinds:

- CFA_RSP / CFA_RBP: CFA = rsp/rbp + 8*cfa_off8;
- PLT: the lazy-binding stubs' expression, CFA = rsp + 8, plus 8 when
  (pc & 15) >= rbp_off8 (the threshold is read from the expression);
- END: the return address is undefined (`_start`, a new thread's first
  frame): the stack ends here, cleanly;
- NONE: no CFI (a gap between FDEs, past the last one) or a rule we do not
  support (signal frames, other expressions): the unwinder tries a
  frame-pointer step or stops.

The same layout is `struct ptk_unwind_row` in bpf/ptk_unwind.h; `unwind_python`
is the same walk in Python, the test oracle for the BPF unwinder.
"""
from __future__ import annotations

import bisect
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

from .cfi import NO_REG, RA, RBP, RSP, CallFrameInfo, Rule, cfi_of

KIND_NONE, KIND_CFA_RSP, KIND_CFA_RBP, KIND_PLT, KIND_END = 0, 1, 2, 3, 4
KIND_NAMES = {KIND_NONE: "none", KIND_CFA_RSP: "cfa_rsp", KIND_CFA_RBP: "cfa_rbp",
              KIND_PLT: "plt", KIND_END: "end"}
ROW = struct.Struct("<IHBB")   # pc, cfa_off8, kind, rbp_off8 (struct ptk_unwind_row)
U32 = 1 << 32

# DW_OP_breg7 8; DW_OP_breg16 0; DW_OP_lit15; DW_OP_and; DW_OP_lit<T>; DW_OP_ge;
# DW_OP_lit3; DW_OP_shl; DW_OP_plus  (binutils' lazy .plt: T is 11 or 10)
_PLT_HEAD, _PLT_TAIL = bytes.fromhex("770880003f1a"), bytes.fromhex("2a332422")


class Row(NamedTuple):
    pc: int
    kind: int
    cfa_off8: int = 0
    rbp_off8: int = 0

    @classmethod
    def unpack_from(cls, data: bytes, offset: int = 0) -> "Row":
        pc, cfa_off8, kind, rbp_off8 = ROW.unpack_from(data, offset)
        return cls(pc, kind, cfa_off8, rbp_off8)


def plt_threshold(expr: bytes) -> int | None:
    """T of the lazy PLT's CFA expression, or None for any other expression."""
    if len(expr) == 11 and expr.startswith(_PLT_HEAD) and expr.endswith(_PLT_TAIL):
        lit = expr[6] - 0x30   # DW_OP_lit0..31
        if 0 <= lit < 16:
            return lit
    return None


def classify(rule: Rule | None, signal: bool = False) -> tuple[int, int, int]:
    """(kind, cfa_off8, rbp_off8) of one CFI rule."""
    if rule is None or signal:
        return KIND_NONE, 0, 0
    if rule.other.get(RA) == "undefined":
        return KIND_END, 0, 0
    if rule.saved.get(RA) != -8:
        return KIND_NONE, 0, 0
    rbp_off8 = 0
    if RBP in rule.saved:
        off = -rule.saved[RBP]
        if off <= 0 or off % 8 or off // 8 > 255:
            return KIND_NONE, 0, 0
        rbp_off8 = off // 8
    elif rule.other.get(RBP, "undefined") != "undefined":
        return KIND_NONE, 0, 0   # rbp in a register or an expression
    if rule.cfa_reg == NO_REG:
        threshold = plt_threshold(rule.cfa_expr)
        if threshold is None or rbp_off8:
            return KIND_NONE, 0, 0
        return KIND_PLT, 1, threshold
    off = rule.cfa_off
    if rule.cfa_reg not in (RSP, RBP) or off <= 0 or off % 8 or off // 8 >= 1 << 16:
        return KIND_NONE, 0, 0
    return (KIND_CFA_RSP if rule.cfa_reg == RSP else KIND_CFA_RBP), off // 8, rbp_off8


def compile_rows(cfi: CallFrameInfo) -> list[Row]:
    """Every FDE's rows, classified, with a NONE row wherever the next FDE does
    not start where the previous one ended (and after the last), equal
    neighbours merged."""
    raw: list[Row] = []
    prev_end = None
    for fde in cfi.fdes():
        if prev_end is not None and fde.begin > prev_end:
            raw.append(Row(prev_end, KIND_NONE))
        rows = cfi.rows(fde)
        if rows is None:
            raw.append(Row(fde.begin, KIND_NONE))
        else:
            raw += [Row(pc, *classify(rule, fde.cie.signal)) for pc, rule in rows]
        prev_end = fde.end if prev_end is None else max(prev_end, fde.end)
    if prev_end is not None:
        raw.append(Row(prev_end, KIND_NONE))
    out: list[Row] = []
    for row in raw:
        if out and out[-1].pc >= row.pc:   # same pc (or overlapping FDEs): the later wins
            while out and out[-1].pc >= row.pc:
                out.pop()
        if out and out[-1][1:] == row[1:]:
            continue
        out.append(row)
    return out


@dataclass
class UnwindTable:
    """One module's rows, packed for `unwind_rows`, and searchable here."""

    rows: list[Row]
    pcs: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pcs = [r.pc for r in self.rows]

    @classmethod
    def from_image(cls, image) -> "UnwindTable | None":
        """The table of an elfsyms.ElfImage: .eh_frame, else .debug_frame; None
        without CFI or when its addresses do not fit 32 bits."""
        cfi = cfi_of(image) or cfi_of(image, ".debug_frame")
        if cfi is None:
            return None
        rows = compile_rows(cfi)
        if not rows or rows[-1].pc >= U32:
            return None
        return cls(rows)

    @classmethod
    def from_packed(cls, data: bytes) -> "UnwindTable":
        return cls([Row(pc, kind, cfa, rbp) for pc, cfa, kind, rbp in ROW.iter_unpack(data)])

    @classmethod
    def cached(cls, image, build_id: str) -> "UnwindTable | None":
        """from_image through a cache on disk keyed by build id (compiling a
        big module takes 0.1-1 s; every run of every tool needs libc's)."""
        data = _read_cache(build_id)
        if data is not None:
            return cls.from_packed(data)
        path = _cache_path(build_id) if build_id else None
        table = cls.from_image(image)
        if table is not None and path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(table.packed())
                os.replace(tmp, path)
            except OSError:
                pass   # a read-only home: compile again next time
        return table

    @classmethod
    def cached_packed(cls, image, build_id: str) -> bytes | None:
        """The packed rows alone, as `unwind_rows` takes them: from the disk
        cache without making a Row per row (a 10^5-row module took 0.2 s that
        way), else compiled (and cached) by `cached`."""
        data = _read_cache(build_id)
        if data is not None:
            return data
        table = cls.cached(image, build_id)
        return table.packed() if table is not None else None

    def packed(self) -> bytes:
        return b"".join(ROW.pack(r.pc, r.cfa_off8, r.kind, r.rbp_off8) for r in self.rows)

    def kinds(self) -> Counter:
        return Counter(KIND_NAMES[r.kind] for r in self.rows)

    def find(self, vaddr: int) -> Row | None:
        i = bisect.bisect_right(self.pcs, vaddr) - 1
        return self.rows[i] if i >= 0 else None


CACHE_FORMAT = "v1"   # bump when rows change meaning


def _read_cache(build_id: str) -> bytes | None:
    path = _cache_path(build_id) if build_id else None
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if data and len(data) % ROW.size == 0 else None


def _cache_path(build_id: str) -> Path | None:
    if not all(c in "0123456789abcdef" for c in build_id):
        return None
    root = os.environ.get("PYTRACEKIT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pytracekit")
    return Path(root) / "unwind" / CACHE_FORMAT / f"{build_id}.rows"


@dataclass(frozen=True)
class ModuleRange:
    """An executable mapping: absolute [start, end), vaddr = address - bias."""
    start: int
    end: int
    bias: int
    table: UnwindTable | None


STOP_END, STOP_DEPTH, STOP_NO_RULE, STOP_BAD_READ, STOP_BAD_RA = (
    "end", "depth", "no_rule", "bad_read", "bad_ra")
FP_STACK_SPAN = 8 << 20


def unwind_python(ranges: list[ModuleRange], pc: int, sp: int, bp: int,
                  read: Callable[[int], int | None], max_frames: int = 127
                  ) -> tuple[list[int], str]:
    """The BPF unwinder's walk (bpf/ptk_unwind.h) in Python: absolute frames
    leaf first, and why it stopped. `read(address)` gives the u64 there or
    None. Callers are looked up at ra - 1 (a call may be a function's last
    instruction); a pc with no table or a NONE row takes a frame-pointer step."""
    starts = [r.start for r in ranges]

    def mapping(address: int) -> ModuleRange | None:
        i = bisect.bisect_right(starts, address) - 1
        return ranges[i] if i >= 0 and address < ranges[i].end else None

    frames = [pc]
    lookup = pc
    while True:
        if len(frames) >= max_frames:
            return frames, STOP_DEPTH
        m = mapping(lookup)
        row = m.table.find(lookup - m.bias) if m and m.table else None
        kind = row.kind if row else KIND_NONE
        if kind == KIND_END:
            return frames, STOP_END
        if kind == KIND_NONE:
            if not (sp <= bp < sp + FP_STACK_SPAN) or bp % 8:
                return frames, STOP_NO_RULE
            cfa, new_bp = bp + 16, read(bp)
        else:
            if kind == KIND_CFA_RSP:
                cfa = sp + 8 * row.cfa_off8
            elif kind == KIND_CFA_RBP:
                cfa = bp + 8 * row.cfa_off8
            else:   # PLT (rbp_off8 holds the threshold; rbp is unchanged)
                cfa = sp + 8 + (8 if (lookup & 15) >= row.rbp_off8 else 0)
            saves_bp = row.rbp_off8 and kind != KIND_PLT
            new_bp = read(cfa - 8 * row.rbp_off8) if saves_bp else bp
        ra = read(cfa - 8)
        if ra is None or new_bp is None:
            return frames, STOP_BAD_READ
        if not ra or mapping(ra - 1) is None:
            return frames, STOP_BAD_RA
        frames.append(ra)
        sp, bp, lookup = cfa, new_bp, ra - 1

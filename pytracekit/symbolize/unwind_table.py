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
from array import array
import struct
import zlib
from collections import Counter, OrderedDict
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


def compile_rows(*cfis: CallFrameInfo, synthetic: tuple = ()) -> list[Row]:
    """Every FDE's rows, classified, with a NONE row wherever the next FDE does
    not start where the previous one ended (and after the last), equal
    neighbours merged. Several sources (.eh_frame, then .debug_frame, then
    `synthetic` (begin, end, rows) ranges): a later one counts only where no
    earlier one has an FDE (a program built -fno-asynchronous-unwind-tables
    -g has .debug_frame for its own code only, .eh_frame for _start and
    .plt, which is all the linker makes CFI for)."""
    ranges: list[tuple] = []   # (begin, end, source, rows of it: a callable)
    sources = [[(f.begin, f.end, lambda f=f, c=cfi: c.rows(f), f.cie.signal)
                for f in cfi.fdes()] for cfi in cfis]
    sources.append([(b, e, lambda r=rows: r, None) for b, e, rows in synthetic])
    for source, fdes in enumerate(sources):
        taken = sorted((b, e) for b, e, *_ in ranges)
        starts = [b for b, _e in taken]
        for begin, end, rows_of, signal in fdes:
            i = bisect.bisect_right(starts, begin) - 1
            overlaps = (i >= 0 and taken[i][1] > begin) or \
                (i + 1 < len(taken) and taken[i + 1][0] < end)
            if source == 0 or not overlaps:
                ranges.append((begin, end, source, rows_of, signal))
    ranges.sort(key=lambda t: (t[0], t[2]))
    raw: list[Row] = []
    prev_end = None
    for begin, end, _source, rows_of, signal in ranges:
        if prev_end is not None and begin > prev_end:
            raw.append(Row(prev_end, KIND_NONE))
        rows = rows_of()
        if rows is None:
            raw.append(Row(begin, KIND_NONE))
        elif signal is None:   # synthetic: already rows
            raw += rows
        else:
            raw += [Row(pc, *classify(rule, signal)) for pc, rule in rows]
        prev_end = end if prev_end is None else max(prev_end, end)
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
    def from_image(cls, image, debug=None) -> "UnwindTable | None":
        """The table of an elfsyms.ElfImage: its .eh_frame, then .debug_frame
        where .eh_frame has nothing, then that of its separate `debug` file
        (an ElfImage: a stripped binary's .debug_frame is only there); None
        without CFI or when its addresses do not fit 32 bits."""
        cfis = [cfi for cfi in (cfi_of(image), cfi_of(image, ".debug_frame"),
                                cfi_of(debug, ".debug_frame")) if cfi is not None]
        if not cfis:
            return None
        rows = compile_rows(*cfis, synthetic=plt_rows(image))
        if not rows or rows[-1].pc >= U32:
            return None
        return cls(rows)

    @classmethod
    def from_packed(cls, data: bytes) -> "UnwindTable":
        return cls([Row(pc, kind, cfa, rbp) for pc, cfa, kind, rbp in ROW.iter_unpack(data)])

    @classmethod
    def cached(cls, image, build_id: str, file_path: str = "") -> "UnwindTable | None":
        """from_image (with the debug file of the file at `file_path`, if any)
        through a cache on disk keyed by build id (compiling a big module takes
        0.1-1 s; every run of every tool needs libc's). The cache lives with
        the header cache and passes its ownership checks (see check_cache)."""
        path = _cache_path(build_id) if build_id else None
        data = _read_trusted(path) if path is not None else None
        if data and len(data) % ROW.size == 0:
            return cls.from_packed(data)
        table = cls.from_image(image, debug_image(file_path, image) if file_path else None)
        if table is not None and path is not None:
            from ..kernel.headers import write_cache_file
            write_cache_file(path, table.packed())
        return table

    @classmethod
    def cached_packed(cls, image, build_id: str, file_path: str = "") -> bytes | None:
        """The packed rows alone, as `unwind_rows` takes them: from the disk
        cache (trusted files only) without making a Row per row (a 10^5-row
        module took 0.2 s that way), else compiled (and cached) by `cached`.
        A file without a build id has no place on disk: its rows are kept in
        memory by what they are made of (_UNNAMED), as its table is asked again each time
        it is evicted and mapped anew (4 compiles of one module in 30 s)."""
        path = _cache_path(build_id) if build_id else None
        data = _read_trusted(path) if path is not None else None
        if data and len(data) % ROW.size == 0:
            return data
        key = _content_key(image, file_path) if not build_id else None
        if key is not None and key in _UNNAMED:
            _UNNAMED.move_to_end(key)
            return _UNNAMED[key]
        table = cls.cached(image, build_id, file_path)
        data = table.packed() if table is not None else None
        if key is not None:
            _keep_unnamed(key, data)
        return data

    def packed(self) -> bytes:
        return b"".join(ROW.pack(r.pc, r.cfa_off8, r.kind, r.rbp_off8) for r in self.rows)

    def kinds(self) -> Counter:
        return Counter(KIND_NAMES[r.kind] for r in self.rows)

    def find(self, vaddr: int) -> Row | None:
        i = bisect.bisect_right(self.pcs, vaddr) - 1
        return self.rows[i] if i >= 0 else None


class PackedTable:
    """A module's rows as packed for `unwind_rows`, searched in place: 12
    bytes a row, where UnwindTable's Row objects take about ten times that
    (python3.11's ~65k rows: ~0.8 MB, not ~8 MB). For tables kept in user
    space (collect/first_samples.py keeps up to 16)."""

    __slots__ = ("data", "pcs")

    def __init__(self, data: bytes) -> None:
        self.data = data
        words = array("I")   # ROW's pc is its first u32 of two
        words.frombytes(data[:len(data) - len(data) % ROW.size])
        self.pcs = words[0::ROW.size // words.itemsize]

    def find(self, vaddr: int) -> Row | None:
        i = bisect.bisect_right(self.pcs, vaddr) - 1
        if i < 0:
            return None
        pc, cfa, kind, rbp = ROW.unpack_from(self.data, i * ROW.size)
        return Row(pc, kind, cfa, rbp)


CACHE_FORMAT = "v2"   # bump when rows change meaning (v2: .debug_frame merged, PLT rows)


def plt_rows(image) -> tuple:
    """(begin, end, rows) of the PLT sections, as the linker's own .eh_frame
    describes them, for a file that lacks it (.debug_frame never covers
    them): the lazy .plt (PLT0 pushes twice, then each 16-byte stub pushes
    once at offset 6: the PLT expression with threshold 11) and the stubs of
    .plt.sec/.plt.got (one jump: the return address at rsp)."""
    out = []
    plt = image.section(".plt")
    if plt is not None and plt.size >= 32 and plt.size % 16 == 0:
        head = image.section_bytes(plt)[:16]
        if head[:2] == b"\xff\x35" and head[6:8] == b"\xff\x25":   # push, jmp *GOT: no IBT
            out.append((plt.addr, plt.addr + plt.size,
                        [Row(plt.addr, KIND_CFA_RSP, 2), Row(plt.addr + 6, KIND_CFA_RSP, 3),
                         Row(plt.addr + 16, KIND_PLT, 1, 11)]))
    for name in (".plt.sec", ".plt.got"):
        sec = image.section(name)
        if sec is not None and sec.size:
            out.append((sec.addr, sec.addr + sec.size, [Row(sec.addr, KIND_CFA_RSP, 1)]))
    return tuple(out)


def debug_image(path: str, image):
    """The separate debug file of the ELF file at `path` (by build id or
    debuglink, as elfsyms finds it for symbols) that has .debug_frame, or None."""
    from .elfsyms import debug_file_candidates, load_image
    if image.section(".debug_frame") is not None:
        return None   # the file has its own
    build_id = image.build_id()
    for candidate in debug_file_candidates(path, build_id, image.debuglink()):
        debug = load_image(candidate)
        if debug is None or (build_id and debug.build_id() and debug.build_id() != build_id):
            continue
        return debug if debug.section(".debug_frame") is not None else None
    return None


def _read_trusted(path: Path) -> bytes | None:
    from ..kernel.headers import read_trusted
    return read_trusted(path)


def cache_dir() -> Path:
    """Where compiled tables are kept: next to the header cache (root's is
    /var/cache/pytracekit), so they are under the same ownership rules."""
    from ..kernel.headers import cache_root
    return cache_root() / "unwind" / CACHE_FORMAT


def check_cache() -> None:
    """Refuse (one-line PytracekitError) a table cache, a directory above it or
    a table in it that another user owns or could write, or that is a link:
    its rows steer the in-kernel unwinder of every stack root collects."""
    from ..kernel.headers import check_cache as check_paths
    directory = cache_dir()
    try:   # names, not Path objects: every stack tool's start checks them all
        with os.scandir(directory) as listing:
            tables = sorted(entry.path for entry in listing)
    except OSError:
        tables = []
    check_paths(directory, *tables, what="the unwind table cache")   # type: ignore[arg-type]


# packed rows of files without a build id, by what they are made of (_content_key);
# the least recently asked dropped first, UNNAMED_BYTES in all at most
UNNAMED_BYTES = 8 << 20
_UNNAMED: "OrderedDict[tuple, bytes | None]" = OrderedDict()


def _content_key(image, file_path: str) -> tuple | None:
    """What a file's rows are made of: its path (its debug file is found by
    it), its size, its CFI sections' bytes (CRC-32 at C speed: the compile
    reads them all anyway) and its PLT sections' places; no other page of
    the file is touched (a mapped file's pages count in the RSS)."""
    if getattr(image, "sections", None) is None:
        return None
    parts: list = [file_path, len(image.data)]
    for sec in image.sections:
        if sec.name in (".eh_frame", ".debug_frame"):
            view = getattr(image.data, "view", image.data)
            parts.append((sec.name, sec.size,
                          zlib.crc32(memoryview(view)[sec.offset:sec.offset + sec.size])))
        elif sec.name.startswith(".plt"):
            parts.append((sec.name, sec.addr, sec.size))
    return tuple(parts)


def _keep_unnamed(key: tuple, data: bytes | None) -> None:
    size = len(data or b"")
    if size > UNNAMED_BYTES:
        return
    _UNNAMED[key] = data
    while sum(len(v or b"") for v in _UNNAMED.values()) > UNNAMED_BYTES:
        _UNNAMED.popitem(last=False)


def cached_rows_file(build_id: str) -> tuple[int, int] | None:
    """(an open fd, the size) of a module's rows in the disk cache, trusted and
    whole rows, for a reader that puts them straight where they go (the
    unwinder's mapped rows: no bytes object, one copy); the caller closes it."""
    path = _cache_path(build_id)
    if path is None:
        return None
    from ..kernel.headers import open_trusted
    opened = open_trusted(path)
    if opened is not None and (not opened[1] or opened[1] % ROW.size):
        os.close(opened[0])
        return None
    return opened


def _cache_path(build_id: str) -> Path | None:
    if not build_id or not all(c in "0123456789abcdef" for c in build_id):
        return None
    return cache_dir() / f"{build_id}.rows"



@dataclass(frozen=True)
class ModuleRange:
    """An executable mapping: absolute [start, end), vaddr = address - bias."""
    start: int
    end: int
    bias: int
    table: UnwindTable | PackedTable | None


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

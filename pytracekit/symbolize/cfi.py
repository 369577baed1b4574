"""DWARF call frame information (.eh_frame, .debug_frame) of one ELF image.

Two uses: `CallFrameInfo.rule_at(vaddr)` (one address, lazily, through
.eh_frame_hdr's sorted table) and `CallFrameInfo.fdes()` + `rows(fde)` (every
row of every FDE, for the compact unwind tables of unwind_table.py). x86_64
DWARF registers: rbp 6, rsp 7, return address 16.
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Iterator

RBP, RSP, RA = 6, 7, 16
NO_REG = -1   # cfa_reg of a CFA given by a DWARF expression


def _leb128(data: bytes, pos: int, signed: bool) -> tuple[int, int]:
    """A DWARF LEB128 number at data[pos]: (value, position after it)."""
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if signed and b & 0x40:
                result -= 1 << shift
            return result, pos


def _uleb(data: bytes, pos: int) -> tuple[int, int]:
    return _leb128(data, pos, signed=False)


def _sleb(data: bytes, pos: int) -> tuple[int, int]:
    return _leb128(data, pos, signed=True)


_FIXED = {0x02: "<H", 0x03: "<I", 0x04: "<Q", 0x0A: "<h", 0x0B: "<i", 0x0C: "<q", 0x00: "<Q"}


def _pointer(data: bytes, pos: int, enc: int, field_vaddr: int) -> tuple[int, int]:
    """A DW_EH_PE-encoded pointer; pcrel is relative to the field's address."""
    fmt = enc & 0x0F
    if fmt == 0x01:
        value, end = _uleb(data, pos)
    elif fmt == 0x09:
        value, end = _sleb(data, pos)
    else:
        code = _FIXED[fmt]
        value, end = struct.unpack_from(code, data, pos)[0], pos + struct.calcsize(code)
    if enc & 0x70 == 0x10:
        value += field_vaddr
    elif enc & 0x70:
        raise KeyError(enc)   # textrel/datarel/funcrel: not used by x86_64 .eh_frame
    return value & 0xFFFFFFFFFFFFFFFF, end


@dataclass
class Cie:
    """A Common Information Entry: what its FDEs share."""
    code_align: int
    data_align: int
    ra_reg: int
    fde_enc: int
    has_aug_data: bool
    initial: bytes
    signal: bool = False   # 'S' augmentation: a signal frame (the pc is not after a call)


@dataclass
class Rule:
    """The unwind rule in force at one address. `saved` holds registers saved
    at CFA+offset; `other` those with any other rule ("undefined", "expr",
    "val_expr", "val_offset", "register"); registers in neither are unchanged."""
    cfa_reg: int
    cfa_off: int
    saved: dict[int, int] = field(default_factory=dict)
    other: dict[int, str] = field(default_factory=dict)
    cfa_expr: bytes = b""

    def copy(self) -> "Rule":
        return Rule(self.cfa_reg, self.cfa_off, dict(self.saved), dict(self.other),
                    self.cfa_expr)

    def set_saved(self, reg: int, off: int) -> None:
        self.saved[reg] = off
        self.other.pop(reg, None)

    def set_other(self, reg: int, how: str) -> None:
        self.saved.pop(reg, None)
        self.other[reg] = how

    def forget(self, reg: int) -> None:
        self.saved.pop(reg, None)
        self.other.pop(reg, None)


@dataclass(frozen=True)
class Fde:
    """A Frame Description Entry: one address range and its CFA program."""
    begin: int
    end: int
    instructions: bytes
    cie: Cie


class CallFrameInfo:
    """The .eh_frame (or .debug_frame, `debug_frame=True`) of one ELF image.
    For rule_at, FDEs are found through .eh_frame_hdr's sorted table when there
    is one (a browser has hundreds of thousands) and parsed only when asked for."""

    def __init__(self, data: bytes, section_vaddr: int, hdr: bytes = b"",
                 hdr_vaddr: int = 0, debug_frame: bool = False) -> None:
        self.data = data
        self.vaddr = section_vaddr
        self.debug_frame = debug_frame
        self._cies: dict[int, Cie] = {}
        self._rules: dict[int, Rule | None] = {}
        table = self._hdr_table(hdr, hdr_vaddr) if hdr and not debug_frame else None
        if table is None:
            table = sorted(self._scan())
        self.starts = [t[0] for t in table]
        self.offsets = [t[1] for t in table]

    def _hdr_table(self, hdr: bytes, hdr_vaddr: int) -> list[tuple[int, int]] | None:
        """(initial location, offset of the FDE in .eh_frame) from .eh_frame_hdr."""
        try:
            if hdr[0] != 1 or hdr[3] != 0x3B:   # version 1, datarel sdata4 pairs
                return None
            _, pos = _pointer(hdr, 4, hdr[1], hdr_vaddr + 4)
            count, pos = _pointer(hdr, pos, hdr[2], hdr_vaddr + pos)
            words = memoryview(bytes(hdr[pos:pos + 8 * count])).cast("i")
        except (IndexError, KeyError, struct.error, TypeError):
            return None
        base = hdr_vaddr - self.vaddr
        return list(zip((w + hdr_vaddr for w in words[0::2]),
                        (w + base for w in words[1::2])))

    def _is_cie(self, cie_id: int) -> bool:
        return cie_id == (0xFFFFFFFF if self.debug_frame else 0)

    def _scan(self):
        """Every FDE's (initial location, offset), without .eh_frame_hdr."""
        data, pos = self.data, 0
        while pos + 8 <= len(data):
            length, cie_id = struct.unpack_from("<II", data, pos)
            if length in (0, 0xFFFFFFFF):
                break   # terminator (64-bit DWARF is not produced for x86_64 CFI)
            if not self._is_cie(cie_id):
                fde = self._fde(pos)
                if fde is not None:
                    yield fde.begin, pos
            pos += 4 + length

    def fdes(self) -> Iterator[Fde]:
        """Every FDE of the section, sorted by start address."""
        for off in self.offsets:
            fde = self._fde(off)
            if fde is not None and fde.end > fde.begin:
                yield fde

    def _fde(self, pos: int) -> Fde | None:
        try:
            length, cie_id = struct.unpack_from("<II", self.data, pos)
            end = pos + 4 + length
            # .eh_frame: a back-offset from this field; .debug_frame: a section offset
            cie_pos = cie_id if self.debug_frame else pos + 4 - cie_id
            cie = self._cies.get(cie_pos)
            if cie is None:
                cie_len = struct.unpack_from("<I", self.data, cie_pos)[0]
                cie = self._cies[cie_pos] = self._cie(cie_pos + 8, cie_pos + 4 + cie_len)
            at = pos + 8
            begin, at = _pointer(self.data, at, cie.fde_enc, self.vaddr + at)
            size, at = _pointer(self.data, at, cie.fde_enc & 0x0F, 0)
            if cie.has_aug_data:
                aug_len, at = _uleb(self.data, at)
                at += aug_len
            return Fde(begin, begin + size, bytes(self.data[at:end]), cie)
        except (struct.error, IndexError, KeyError, ValueError, UnicodeDecodeError):
            return None

    def _cie(self, pos: int, end: int) -> Cie:
        data = self.data
        version = data[pos]
        aug_end = data.index(b"\0", pos + 1)
        aug = data[pos + 1:aug_end].decode()
        pos = aug_end + 1
        if "eh" in aug:
            pos += 8
        if version == 4:
            pos += 2   # address_size, segment_selector_size (.debug_frame v4)
        code_align, pos = _uleb(data, pos)
        data_align, pos = _sleb(data, pos)
        if version == 1:
            ra_reg, pos = data[pos], pos + 1
        else:
            ra_reg, pos = _uleb(data, pos)
        # .debug_frame: absolute 8-byte addresses (DW_EH_PE_absptr)
        fde_enc = 0
        if aug.startswith("z"):
            aug_len, pos = _uleb(data, pos)
            aug_data_end = pos + aug_len
            for ch in aug[1:]:
                if ch == "R":
                    fde_enc = data[pos]
                    pos += 1
                elif ch == "L":
                    pos += 1
                elif ch == "P":
                    enc = data[pos]
                    _, pos = _pointer(data, pos + 1, enc & 0x7F, 0)
            pos = aug_data_end
        return Cie(code_align, data_align, ra_reg, fde_enc, aug.startswith("z"),
                   data[pos:end], signal="S" in aug)

    def rule_at(self, vaddr: int) -> Rule | None:
        if vaddr not in self._rules:
            self._rules[vaddr] = self._rule_at(vaddr)
        return self._rules[vaddr]

    def _rule_at(self, vaddr: int) -> Rule | None:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        fde = self._fde(self.offsets[i])
        if fde is None or not fde.begin <= vaddr < fde.end:
            return None
        initial = self._run(fde.cie.initial, fde.cie, Rule(RSP, 8), None, None)
        if initial is None:
            return None
        return self._run(fde.instructions, fde.cie, initial.copy(), fde.begin, vaddr, initial)

    def rows(self, fde: Fde) -> list[tuple[int, Rule]] | None:
        """(address, rule) at each address where the FDE's rule changes, in
        [begin, end); None when an instruction is not understood."""
        initial = self._run(fde.cie.initial, fde.cie, Rule(RSP, 8), None, None)
        if initial is None:
            return None
        out: list[tuple[int, Rule]] = []

        def emit(loc: int, rule: Rule) -> None:
            if out and out[-1][0] == loc:
                out.pop()
            if loc < fde.end:
                out.append((loc, rule.copy()))

        if self._run(fde.instructions, fde.cie, initial.copy(), fde.begin, None, initial,
                     emit) is None:
            return None
        return out

    def _run(self, code: bytes, cie: Cie, rule: Rule, loc: int | None, target: int | None,
             initial: Rule | None = None, emit=None) -> Rule | None:
        """Execute CFA instructions up to `target` (all of them when None);
        `emit(loc, rule)` is called with the rule in force at each location."""
        pos, stack = 0, []
        da, ca = cie.data_align, cie.code_align
        while pos < len(code):
            op = code[pos]
            pos += 1
            high, low = op & 0xC0, op & 0x3F
            advance = None
            if high == 0x40:
                advance = low * ca
            elif high == 0x80:
                off, pos = _uleb(code, pos)
                rule.set_saved(low, off * da)
            elif high == 0xC0:
                self._restore(rule, initial, low)
            elif op == 0x00:
                pass
            elif op == 0x01:   # DW_CFA_set_loc (absolute; .debug_frame)
                new, pos = _pointer(code, pos, cie.fde_enc, 0)
                if loc is not None:
                    advance = new - loc
            elif op in (0x02, 0x03, 0x04):
                fmt = {0x02: "<B", 0x03: "<H", 0x04: "<I"}[op]
                advance = struct.unpack_from(fmt, code, pos)[0] * ca
                pos += struct.calcsize(fmt)
            elif op in (0x05, 0x14):
                reg, pos = _uleb(code, pos)
                off, pos = _uleb(code, pos)
                if op == 0x05:
                    rule.set_saved(reg, off * da)
                else:
                    rule.set_other(reg, "val_offset")
            elif op == 0x06:
                reg, pos = _uleb(code, pos)
                self._restore(rule, initial, reg)
            elif op == 0x07:
                reg, pos = _uleb(code, pos)
                rule.set_other(reg, "undefined")
            elif op == 0x08:
                reg, pos = _uleb(code, pos)
                rule.forget(reg)
            elif op == 0x09:
                reg, pos = _uleb(code, pos)
                _, pos = _uleb(code, pos)
                rule.set_other(reg, "register")
            elif op == 0x0A:
                stack.append(rule.copy())
            elif op == 0x0B:
                if stack:
                    rule = stack.pop()
            elif op == 0x0C:
                rule.cfa_reg, pos = _uleb(code, pos)
                rule.cfa_off, pos = _uleb(code, pos)
                rule.cfa_expr = b""
            elif op == 0x0D:
                rule.cfa_reg, pos = _uleb(code, pos)
                rule.cfa_expr = b""
            elif op == 0x0E:
                rule.cfa_off, pos = _uleb(code, pos)
            elif op == 0x0F:   # CFA from an expression (PLT stubs, signal frames)
                size, pos = _uleb(code, pos)
                rule.cfa_reg, rule.cfa_off, rule.cfa_expr = NO_REG, 0, bytes(code[pos:pos + size])
                pos += size
            elif op in (0x10, 0x16):
                reg, pos = _uleb(code, pos)
                size, pos = _uleb(code, pos)
                pos += size
                rule.set_other(reg, "expr" if op == 0x10 else "val_expr")
            elif op in (0x11, 0x15):
                reg, pos = _uleb(code, pos)
                off, pos = _sleb(code, pos)
                if op == 0x11:
                    rule.set_saved(reg, off * da)
                else:
                    rule.set_other(reg, "val_offset")
            elif op == 0x12:
                rule.cfa_reg, pos = _uleb(code, pos)
                off, pos = _sleb(code, pos)
                rule.cfa_off = off * da
                rule.cfa_expr = b""
            elif op == 0x13:
                off, pos = _sleb(code, pos)
                rule.cfa_off = off * da
            elif op == 0x2E:
                _, pos = _uleb(code, pos)
            else:
                return None   # an opcode we do not know: do not guess
            if advance is not None and loc is not None:
                if emit is not None:
                    emit(loc, rule)
                loc += advance
                if target is not None and loc > target:
                    break
        if emit is not None and loc is not None:
            emit(loc, rule)
        return rule

    @staticmethod
    def _restore(rule: Rule, initial: Rule | None, reg: int) -> None:
        rule.forget(reg)
        if initial is not None:
            if reg in initial.saved:
                rule.set_saved(reg, initial.saved[reg])
            elif reg in initial.other:
                rule.set_other(reg, initial.other[reg])


def cfi_of(image, section: str = ".eh_frame") -> CallFrameInfo | None:
    """The CallFrameInfo of an elfsyms.ElfImage's .eh_frame (or .debug_frame),
    or None without that section."""
    sec = image.section(section) if image is not None else None
    if sec is None:
        return None
    if section == ".debug_frame":
        return CallFrameInfo(image.section_bytes(sec), 0, debug_frame=True)
    hdr = image.section(".eh_frame_hdr")
    return CallFrameInfo(image.section_bytes(sec), sec.addr,
                         image.section_bytes(hdr) if hdr else b"", hdr.addr if hdr else 0)

"""Recover the frames that frame-pointer unwinding skips at the leaf.

The kernel walks user stacks through saved frame pointers. A library built
without them (Debian's libc) is invisible to that walk: when a thread stops
inside clock_nanosleep(), the walk goes from the libc address straight to the
caller of the first function that *does* keep a frame pointer, and
`sleeper` (the function that called into libc) is lost.

The BPF programs save the leaf's registers and the top of its stack once per
user stack id (`struct ptk_leaf`); here the .eh_frame call-frame information
of the leaf's binary says where each frame's return address is, and we step
until we reach the address the frame-pointer walk already found. If anything
is missing (no CFI, an expression rule, a read outside the saved bytes) we
insert nothing: a frame is added only when its return address is proven.
x86_64 only (DWARF registers: rbp 6, rsp 7, return address 16).
"""
from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field

RBP, RSP = 6, 7
MAX_STEPS = 16


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
    code_align: int
    data_align: int
    ra_reg: int
    fde_enc: int
    has_aug_data: bool
    initial: bytes


@dataclass
class Rule:
    cfa_reg: int
    cfa_off: int
    saved: dict[int, int] = field(default_factory=dict)   # reg -> offset from CFA


class CallFrameInfo:
    """The .eh_frame of one ELF image: which rule holds at an address. FDEs are
    found through .eh_frame_hdr's sorted table when there is one (a browser has
    hundreds of thousands) and parsed only when asked for."""

    def __init__(self, data: bytes, section_vaddr: int, hdr: bytes = b"",
                 hdr_vaddr: int = 0) -> None:
        self.data = data
        self.vaddr = section_vaddr
        self._cies: dict[int, Cie] = {}
        self._rules: dict[int, Rule | None] = {}
        table = self._hdr_table(hdr, hdr_vaddr) if hdr else None
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

    def _scan(self):
        """Every FDE's (initial location, offset), without .eh_frame_hdr."""
        data, pos = self.data, 0
        while pos + 8 <= len(data):
            length, cie_id = struct.unpack_from("<II", data, pos)
            if length in (0, 0xFFFFFFFF):
                break
            if cie_id != 0:
                fde = self._fde(pos)
                if fde is not None:
                    yield fde[0], pos
            pos += 4 + length

    def _fde(self, pos: int) -> tuple[int, int, bytes, Cie] | None:
        """(begin, end, instructions, CIE) of the FDE at this offset."""
        try:
            length, cie_id = struct.unpack_from("<II", self.data, pos)
            end = pos + 4 + length
            cie_pos = pos + 4 - cie_id
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
            return begin, begin + size, bytes(self.data[at:end]), cie
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
        code_align, pos = _uleb(data, pos)
        data_align, pos = _sleb(data, pos)
        if version == 1:
            ra_reg, pos = data[pos], pos + 1
        else:
            ra_reg, pos = _uleb(data, pos)
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
        return Cie(code_align, data_align, ra_reg, fde_enc, aug.startswith("z"), data[pos:end])

    def rule_at(self, vaddr: int) -> Rule | None:
        if vaddr not in self._rules:
            self._rules[vaddr] = self._rule_at(vaddr)
        return self._rules[vaddr]

    def _rule_at(self, vaddr: int) -> Rule | None:
        i = bisect.bisect_right(self.starts, vaddr) - 1
        if i < 0:
            return None
        fde = self._fde(self.offsets[i])
        if fde is None or not fde[0] <= vaddr < fde[1]:
            return None
        begin, _end, instructions, cie = fde
        initial = self._run(cie.initial, cie, Rule(RSP, 8), None, None)
        if initial is None:
            return None
        start_rule = Rule(initial.cfa_reg, initial.cfa_off, dict(initial.saved))
        return self._run(instructions, cie, start_rule, begin, vaddr, initial)

    def _run(self, code: bytes, cie: Cie, rule: Rule, loc: int | None, target: int | None,
             initial: Rule | None = None) -> Rule | None:
        """Execute CFA instructions up to `target` (all of them when None)."""
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
                rule.saved[low] = off * da
            elif high == 0xC0:
                rule.saved.pop(low, None)
                if initial and low in initial.saved:
                    rule.saved[low] = initial.saved[low]
            elif op == 0x00:
                pass
            elif op in (0x02, 0x03, 0x04):
                fmt = {0x02: "<B", 0x03: "<H", 0x04: "<I"}[op]
                advance = struct.unpack_from(fmt, code, pos)[0] * ca
                pos += struct.calcsize(fmt)
            elif op in (0x05, 0x14):
                reg, pos = _uleb(code, pos)
                off, pos = _uleb(code, pos)
                if op == 0x05:
                    rule.saved[reg] = off * da
            elif op in (0x06, 0x07, 0x08):
                reg, pos = _uleb(code, pos)
                rule.saved.pop(reg, None)
            elif op == 0x09:
                _, pos = _uleb(code, pos)
                _, pos = _uleb(code, pos)
            elif op == 0x0A:
                stack.append((rule.cfa_reg, rule.cfa_off, dict(rule.saved)))
            elif op == 0x0B:
                if stack:
                    rule.cfa_reg, rule.cfa_off, rule.saved = stack.pop()
            elif op == 0x0C:
                rule.cfa_reg, pos = _uleb(code, pos)
                rule.cfa_off, pos = _uleb(code, pos)
            elif op == 0x0D:
                rule.cfa_reg, pos = _uleb(code, pos)
            elif op == 0x0E:
                rule.cfa_off, pos = _uleb(code, pos)
            elif op == 0x0F:
                return None   # CFA from an expression (PLT stubs, signal frames)
            elif op in (0x10, 0x16):
                reg, pos = _uleb(code, pos)
                size, pos = _uleb(code, pos)
                pos += size
                rule.saved.pop(reg, None)
            elif op in (0x11, 0x15):
                reg, pos = _uleb(code, pos)
                off, pos = _sleb(code, pos)
                if op == 0x11:
                    rule.saved[reg] = off * da
            elif op == 0x12:
                rule.cfa_reg, pos = _uleb(code, pos)
                off, pos = _sleb(code, pos)
                rule.cfa_off = off * da
            elif op == 0x13:
                off, pos = _sleb(code, pos)
                rule.cfa_off = off * da
            elif op == 0x2E:
                _, pos = _uleb(code, pos)
            else:
                return None   # an opcode we do not know: do not guess
            if advance is not None and loc is not None:
                loc += advance
                if target is not None and loc > target:
                    break
        return rule


def cfi_of(image) -> CallFrameInfo | None:
    """The CallFrameInfo of an elfsyms.ElfImage, or None without .eh_frame."""
    sec = image.section(".eh_frame") if image is not None else None
    if sec is None:
        return None
    hdr = image.section(".eh_frame_hdr")
    return CallFrameInfo(image.section_bytes(sec), sec.addr,
                         image.section_bytes(hdr) if hdr else b"", hdr.addr if hdr else 0)


def recover_frames(addresses: list[int], ip: int, sp: int, bp: int, stack: bytes,
                   rule_for) -> list[int]:
    """Addresses with the frames that the frame-pointer walk skipped put back.

    Unwinds with CFI from the saved leaf registers as far as the saved stack
    bytes go, then joins that walk to the frame-pointer walk at the deepest
    return address both found, provided every frame-pointer address above it
    was also found by CFI (else the walks disagree and nothing changes).
    `rule_for(address, is_return)` gives the Rule that holds there, or None.
    """
    if len(addresses) < 2 or addresses[0] != ip:
        return addresses
    sp0 = sp

    def read(addr: int) -> int | None:
        off = addr - sp0
        if 0 <= off <= len(stack) - 8:
            return struct.unpack_from("<Q", stack, off)[0]
        return None

    walked = [ip]
    pc, is_return = ip, False
    for _ in range(MAX_STEPS):
        rule = rule_for(pc, is_return)
        if rule is None or rule.cfa_reg not in (RSP, RBP):
            break
        cfa = (sp if rule.cfa_reg == RSP else bp) + rule.cfa_off
        ra = read(cfa - 8)
        saved_bp = read(cfa + rule.saved[RBP]) if RBP in rule.saved else bp
        if not ra or saved_bp is None:
            break
        walked.append(ra)
        sp, bp, pc, is_return = cfa, saved_bp, ra, True
    position = {a: i for i, a in enumerate(walked)}
    for j in range(len(addresses) - 1, 0, -1):
        k = position.get(addresses[j])
        if k is not None and all(a in position for a in addresses[1:j]):
            # past the frame-pointer walk's end, CFI may still know callers (_start)
            return walked if j == len(addresses) - 1 else walked[:k + 1] + addresses[j + 1:]
    return addresses

"""Leaf-frame recovery from .eh_frame: pure logic on synthetic stacks, and
the real CFI of libc."""
import struct

from pytracekit.symbolize.elfsyms import ElfSymbols
from pytracekit.symbolize.unwind import RBP, RSP, Rule, cfi_of, recover_frames

IP, A1, T, X = 0x5000, 0x6000, 0x7000, 0x8000
SP = 0x1000


def _stack(words: dict[int, int], size: int = 64) -> bytes:
    buf = bytearray(size)
    for addr, value in words.items():
        struct.pack_into("<Q", buf, addr - SP, value)
    return bytes(buf)


def test_frame_skipped_by_frame_pointers_is_put_back():
    # leaf: CFA = sp+16, return address at sp+8 -> A1 (no frame pointer);
    # A1: CFA = sp+8 -> T, which the frame-pointer walk already found.
    rules = {IP: Rule(RSP, 16), A1 - 1: Rule(RSP, 8)}
    stack = _stack({SP + 8: A1, SP + 16: T})
    got = recover_frames([IP, T, X], IP, SP, 0, stack, lambda a, r: rules.get(a - r))
    assert got == [IP, A1, T, X]


def test_frame_pointer_frames_are_left_alone():
    rules = {IP: Rule(RBP, 16, {RBP: -16})}
    bp = SP + 32
    stack = _stack({bp + 8: T, bp: 0})
    got = recover_frames([IP, T, X], IP, SP, bp, stack, lambda a, r: rules.get(a - r))
    assert got == [IP, T, X]


def test_walks_that_disagree_change_nothing():
    rules = {IP: Rule(RSP, 16), A1 - 1: Rule(RSP, 8)}
    stack = _stack({SP + 8: A1, SP + 16: 0x9999})   # never reaches T
    assert recover_frames([IP, T, X], IP, SP, 0, stack,
                          lambda a, r: rules.get(a - r)) == [IP, T, X]
    # no rule at the leaf (no CFI): unchanged
    assert recover_frames([IP, T], IP, SP, 0, stack, lambda a, r: None) == [IP, T]


def test_libc_cfi_has_an_rsp_rule_inside_clock_nanosleep():
    syms = ElfSymbols.load("/usr/lib/x86_64-linux-gnu/libc.so.6")
    cfi = cfi_of(syms.image)
    start = syms.starts[syms.names.index("clock_nanosleep")]
    rule = cfi.rule_at(start)
    assert rule is not None and rule.cfa_reg == RSP and rule.cfa_off == 8   # at entry


def test_leb128_examples_from_the_dwarf_standard():
    from pytracekit.symbolize.unwind import _sleb, _uleb
    for value, encoded in [(2, b"\x02"), (127, b"\x7f"), (128, b"\x80\x01"),
                           (129, b"\x81\x01"), (130, b"\x82\x01"), (12857, b"\xb9\x64")]:
        assert _uleb(b"\xff" + encoded + b"\xff", 1) == (value, 1 + len(encoded))
    for value, encoded in [(2, b"\x02"), (-2, b"\x7e"), (127, b"\xff\x00"), (-127, b"\x81\x7f"),
                           (128, b"\x80\x01"), (-128, b"\x80\x7f"), (129, b"\x81\x01"),
                           (-129, b"\xff\x7e")]:
        assert _sleb(encoded, 0) == (value, len(encoded))

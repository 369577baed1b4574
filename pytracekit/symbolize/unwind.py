"""Recover the frames that frame-pointer unwinding skips at the leaf.

The kernel walks user stacks through saved frame pointers. A library built
without them (Debian's libc) is invisible to that walk: when a thread stops
inside clock_nanosleep(), the walk goes from the libc address straight to the
caller of the first function that *does* keep a frame pointer, and
`sleeper` (the function that called into libc) is lost.

The BPF programs save the leaf's registers and the top of its stack once per
user stack id (`struct ptk_leaf`); here the .eh_frame call-frame information
of the leaf's binary (parsed by cfi.py) says where each frame's return address is, and we step
until we reach the address the frame-pointer walk already found. If anything
is missing (no CFI, an expression rule, a read outside the saved bytes) we
insert nothing: a frame is added only when its return address is proven.
x86_64 only (DWARF registers: rbp 6, rsp 7, return address 16).
"""
from __future__ import annotations

import struct

from .cfi import RBP, RSP, CallFrameInfo, Rule, _sleb, _uleb, cfi_of  # noqa: F401

MAX_STEPS = 16


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

"""bpf_loop() callbacks linked at load (pytracekit/engine/bpfloop.py): which
instructions are taken for a callback's address, and a real program whose
callback runs an exact number of times, compiled and from the program cache."""
from __future__ import annotations

import os
import struct

import pytest

from pytracekit.engine import bpfloop

LD_IMM64, CALL, EXIT, MOV_K = 0x18, 0x85, 0x95, 0xB7


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, dst | src << 4, off, imm)


def ld_imm64(dst: int, value: int = 0, src: int = 0) -> bytes:
    return insn(LD_IMM64, dst, src, imm=value & 0xFFFFFFFF) + insn(0, imm=value >> 32)


def test_the_zero_address_before_bpf_loop_is_a_site():
    prog = (insn(MOV_K, 1, imm=8) + ld_imm64(2) + insn(MOV_K, 3) + insn(MOV_K, 4)
            + insn(CALL, imm=181) + insn(EXIT))
    assert bpfloop.sites(prog) == [(1, 0)]
    linked, records = bpfloop.link(prog, {b"bpf_loop_cb__x": insn(MOV_K, 0) + insn(EXIT)})
    code, regs, _off, imm = struct.unpack_from("<BBhi", linked, 8)
    assert (code, regs & 15, regs >> 4) == (LD_IMM64, 2, 4)   # r2, BPF_PSEUDO_FUNC
    assert 1 + 1 + imm == 7                                  # relative to the next insn
    assert linked[7 * 8:] == insn(MOV_K, 0) + insn(EXIT)
    assert struct.unpack("<IIII", records) == (0, 4, 7, 5)   # caller at 0, callback at 7


def tagged(ident: int) -> bytes:
    """PTK_LOOP_CB(ident) of bpf/pytracekit.h as clang emits it."""
    return ld_imm64(2, bpfloop.TAG_HIGH << 32 | ident)


def test_tagged_sites_each_get_their_own_callback_appended_once():
    call = insn(MOV_K, 1, imm=8) + insn(MOV_K, 3) + insn(MOV_K, 4) + insn(CALL, imm=181)
    prog = tagged(2) + call + tagged(1) + call + tagged(2) + call + insn(EXIT)
    assert bpfloop.sites(prog) == [(0, 2), (6, 1), (12, 2)]
    py, unwind = insn(MOV_K, 0, imm=1) + insn(EXIT), insn(MOV_K, 0, imm=2) + insn(EXIT)
    linked, records = bpfloop.link(prog, {bpfloop.CALLBACKS[1]: py,
                                          bpfloop.CALLBACKS[2]: unwind,
                                          b"bpf_loop_cb__other": insn(EXIT)})
    # the callbacks in order of first use, after the caller's 19 instructions
    assert linked[19 * 8:] == unwind + py
    assert struct.unpack("<IIIIII", records) == (0, 4, 19, 5, 21, 5)
    for at, target in ((0, 19), (6, 21), (12, 19)):
        code, regs, _off, imm = struct.unpack_from("<BBhi", linked, at * 8)
        assert (code, regs >> 4) == (LD_IMM64, 4) and at + 1 + imm == target
        assert struct.unpack_from("<i", linked, at * 8 + 12)[0] == 0   # the tag's upper half


def test_a_site_whose_callback_is_missing_or_ambiguous_is_refused():
    call = insn(CALL, imm=181) + insn(EXIT)
    with pytest.raises(ValueError, match="unwind_step"):
        bpfloop.link(tagged(2) + call, {bpfloop.CALLBACKS[1]: insn(EXIT)})
    with pytest.raises(ValueError, match="PTK_LOOP_CB"):
        bpfloop.link(ld_imm64(2) + call, {b"bpf_loop_cb__x": insn(EXIT),
                                          b"bpf_loop_cb__y": insn(EXIT)})


@pytest.mark.parametrize("prog", [
    ld_imm64(2) + insn(CALL, imm=1) + insn(CALL, imm=181),         # another helper first
    ld_imm64(2) + insn(MOV_K, 2, imm=3) + insn(CALL, imm=181),     # r2 written again
    ld_imm64(3) + insn(CALL, imm=181),                              # not r2
    ld_imm64(2, 5) + insn(CALL, imm=181),                           # a real constant
    ld_imm64(2, 7, src=1) + insn(CALL, imm=181),                    # a map reference
    ld_imm64(2) + insn(0x05, off=1) + insn(CALL, imm=181),         # a jump between
    ld_imm64(2, bpfloop.TAG_HIGH << 32 | 99) + insn(CALL, imm=181),  # no such callback id
], ids=["other-call", "rewritten", "r3", "constant", "map", "jump", "unknown-tag"])
def test_other_zero_loads_are_not_sites(prog):
    assert bpfloop.sites(prog) == []
    assert bpfloop.link(prog, {b"bpf_loop_cb__x": insn(EXIT)}) is None


PROGRAM = r"""
#include "vmlinux.h"
#include "pytracekit.h"
BPF_ARRAY(steps, u64, 2);   /* 0: callback steps, 1: calls of the probe */

long bpf_loop_cb__count(void *unused)
{
    u32 slot = 0;
    u64 *n = steps.lookup(&slot);
    if (n)
        (*n)++;
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_getppid)
{
    if (bpf_get_current_pid_tgid() >> 32 != OUR_PID)
        return 0;
    u32 slot = 1;
    u64 *calls = steps.lookup(&slot);
    if (calls)
        (*calls)++;
    bpf_loop(LOOPS, bpf_loop_cb__count, 0, 0);
    return 0;
}
"""


@pytest.mark.root
def test_a_callback_runs_exactly_its_count_compiled_and_from_the_cache(tmp_path, monkeypatch):
    from pytracekit.engine import loader
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path / "cache"))
    defines = {"OUR_PID": os.getpid(), "LOOPS": 7}
    for cached in (False, True):
        prog = loader.Program.from_text("bpfloop_test", PROGRAM, defines)
        try:
            assert (prog.bpf.module is None) == cached   # CachedBPF has no module
            for _ in range(3):
                os.getppid()
            steps = prog["steps"]
            assert (steps[steps.Key(0)].value, steps[steps.Key(1)].value) == (21, 3)
        finally:
            prog.close()

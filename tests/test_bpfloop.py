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
    assert bpfloop.sites(prog) == [1]
    linked, records = bpfloop.link(prog, insn(MOV_K, 0) + insn(EXIT))
    code, regs, _off, imm = struct.unpack_from("<BBhi", linked, 8)
    assert (code, regs & 15, regs >> 4) == (LD_IMM64, 2, 4)   # r2, BPF_PSEUDO_FUNC
    assert 1 + 1 + imm == 7                                  # relative to the next insn
    assert linked[7 * 8:] == insn(MOV_K, 0) + insn(EXIT)
    assert struct.unpack("<IIII", records) == (0, 4, 7, 5)   # caller at 0, callback at 7


@pytest.mark.parametrize("prog", [
    ld_imm64(2) + insn(CALL, imm=1) + insn(CALL, imm=181),         # another helper first
    ld_imm64(2) + insn(MOV_K, 2, imm=3) + insn(CALL, imm=181),     # r2 written again
    ld_imm64(3) + insn(CALL, imm=181),                              # not r2
    ld_imm64(2, 5) + insn(CALL, imm=181),                           # a real constant
    ld_imm64(2, 7, src=1) + insn(CALL, imm=181),                    # a map reference
    ld_imm64(2) + insn(0x05, off=1) + insn(CALL, imm=181),         # a jump between
], ids=["other-call", "rewritten", "r3", "constant", "map", "jump"])
def test_other_zero_loads_are_not_sites(prog):
    assert bpfloop.sites(prog) == []
    assert bpfloop.link(prog, insn(EXIT)) is None


def test_one_callback_per_program():
    assert bpfloop.callback_name([b"a", b"bpf_loop_cb__x"]) == b"bpf_loop_cb__x"
    assert bpfloop.callback_name([b"a"]) is None
    with pytest.raises(ValueError):
        bpfloop.callback_name([b"bpf_loop_cb__x", b"bpf_loop_cb__y"])


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

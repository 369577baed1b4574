"""A cheaper place for a function's entry uprobe on x86-64.

The kernel emulates a few instructions under a uprobe (jumps, calls, `push`)
and single-steps every other one out of line: a second trap, which costs
about 9 us more per hit in this VM (bench event_cost: 9.6 us per hit at
pthread_mutex_lock's entry, `mov 0x10(%rdi),%eax`; 0.7 us at its `jne` 14
bytes on). `emulated_entry` finds the first instruction the kernel emulates
that every call reaches straight from the entry, with the registers the
probe reads (rsp, rbp and the named argument registers) still as they were
at the entry: a probe there sees each call once, as at the entry, with the
same arguments and the same stack to unwind. Anything it cannot prove (an
instruction it does not know, a branch into those bytes, another symbol
inside them, no objdump) keeps the entry.
"""
from __future__ import annotations

import re
from typing import Any

from ..errors import NotFoundError
from ..symbolize.disasm import NoDisassembler, disassemble
from ..symbolize.elfsyms import load_image

MAX_STEPS = 8            # instructions looked at past the entry
# registers and their narrower names (AT&T, without the %)
_ALIASES = {
    "rdi": ("rdi", "edi", "di", "dil"), "rsi": ("rsi", "esi", "si", "sil"),
    "rdx": ("rdx", "edx", "dx", "dl", "dh"), "rcx": ("rcx", "ecx", "cx", "cl", "ch"),
    "r8": ("r8", "r8d", "r8w", "r8b"), "r9": ("r9", "r9d", "r9w", "r9b"),
    "rsp": ("rsp", "esp", "sp", "spl"), "rbp": ("rbp", "ebp", "bp", "bpl"),
}
# instructions that write only their last operand (and flags), or nothing
_WRITE_LAST = {"mov", "movl", "movq", "movabs", "movzbl", "movzwl", "movsbl", "movswl",
               "movslq", "and", "or", "xor", "add", "sub", "lea", "shl", "shr", "sar"}
_WRITE_NONE = {"cmp", "cmpl", "cmpq", "cmpb", "test", "testl", "testq", "testb",
               "endbr64", "nop", "nopl", "nopw"}
_TARGET = re.compile(r"^(?:0x)?([0-9a-f]+)\b")   # not `*%rax`: indirect
_PREFIXES = {"bnd", "notrack", "rep", "repz", "repnz", "repe", "repne", "ds", "cs", "data16",
             "lock"}


def emulated_opcode(code: bytes) -> bool:
    """True for the encodings x86's uprobes emulate (arch/x86/kernel/uprobes.c):
    jmp/call rel, jcc rel8/rel32, push of a register; no other prefix."""
    if not code:
        return False
    op = code[0]
    if op in (0xe8, 0xe9, 0xeb) or 0x70 <= op <= 0x7f or 0x50 <= op <= 0x57:
        return True
    if len(code) > 1 and op == 0x0f:
        return 0x80 <= code[1] <= 0x8f
    return len(code) > 1 and op == 0x41 and 0x50 <= code[1] <= 0x57


def _operands(text: str) -> tuple[str, list[str]]:
    """The mnemonic and the operands split at top-level commas."""
    mnemonic, _, rest = text.strip().partition(" ")
    ops, depth, cur = [], 0, ""
    for ch in rest.strip():
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and not depth:
            ops.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        ops.append(cur.strip())
    return mnemonic, ops


def _harmless(text: str, kept: set[str]) -> bool:
    """The instruction falls through and writes none of the kept registers
    (nor memory: what it writes is a register named as its last operand)."""
    mnemonic, ops = _operands(text)
    if mnemonic in _WRITE_NONE:
        return True
    if mnemonic not in _WRITE_LAST or not ops:
        return False
    dest = ops[-1]
    return dest.startswith("%") and dest[1:] not in kept


def branch_targets(insns: dict[int, str]) -> set[int]:
    """Addresses direct jumps and calls among `insns` go to (also prefixed ones:
    `bnd jmp`, `notrack call`)."""
    out = set()
    for text in insns.values():
        words = text.split()
        while words and words[0] in _PREFIXES:
            words = words[1:]
        if len(words) < 2 or not words[0].startswith(("j", "call", "loop", "xbegin")):
            continue
        m = _TARGET.match(words[1])
        if m:
            out.add(int(m.group(1), 16))
    return out


def choose_offset(start: int, insns: dict[int, str], code: bytes, end: int,
                  registers: tuple[str, ...], entries: set[int] = frozenset()) -> int:
    """The offset from `start` of the probe point (0: the entry itself).
    `insns`: the function's instructions (vaddr -> objdump text) from `start`
    to `end`; `code`: its bytes from `start`; `registers`: the argument
    registers the probe reads; `entries`: other addresses code may enter at
    (symbols). Pure: the tests give it instructions."""
    kept = {name for reg in ("rsp", "rbp", *registers) for name in _ALIASES[reg]}
    addresses = sorted(a for a in insns if start <= a < end)
    if not addresses or addresses[0] != start:
        return 0
    inside = branch_targets(insns) | set(entries)
    for i, addr in enumerate(addresses[:MAX_STEPS + 1]):
        if addr != start and addr in inside:
            return 0          # entered here too: a probe here would count those entries
        if any(start < t < addr for t in inside):
            return 0
        nxt = addresses[i + 1] if i + 1 < len(addresses) else end
        if emulated_opcode(code[addr - start:nxt - start]):
            return addr - start
        if not _harmless(insns[addr], kept):
            return 0
    return 0


def emulated_entry(path: str, symbol: str, registers: tuple[str, ...] = ("rdi",)) -> tuple[int, int]:
    """(the function's link-time address, the offset of its cheaper probe
    point; 0: the entry). (0, 0) when `symbol` is not exactly one plain
    function (several versions, an IFUNC resolver): the caller attaches by
    name, at the entry."""
    image = load_image(path)
    if image is None:
        return 0, 0
    functions = image.functions()
    found = {(a, s) for a, s, n in functions if n == symbol}
    if len(found) != 1 or found != {(a, s) for a, s, n in image.plain_functions()
                                    if n == symbol}:
        return 0, 0
    start, size = found.pop()
    code = image.read_vaddr(start, size) if size > 0 else None
    if code is None:
        return start, 0
    try:
        insns = disassemble(path, start, start + size, code)
    except NoDisassembler:
        return start, 0
    entries = {a for a, _, _ in functions if start < a < start + size}
    return start, choose_offset(start, insns, code, start + size, registers, entries)


def attach_entry_uprobe(prog: Any, obj: str, fn_name: str, symbol: str, pid: int,
                        registers: tuple[str, ...] = ("rdi",)) -> None:
    """Program `prog`'s `fn_name` on `symbol`'s entry in `obj`, moved to the
    first instruction the kernel emulates where `registers` and the stack are
    still the entry's (emulated_entry): glibc's pthread_mutex_lock, _unlock
    and free start with an instruction it single-steps. Only for a probe that
    reads those registers and the stack (a return probe needs the entry).
    Else at the entry, by name (BCC's own lookup: its errors)."""
    from .specs import find_binary
    try:
        binary = find_binary(obj, pid)
    except NotFoundError:
        binary = None
    start, offset = emulated_entry(binary, symbol, registers) if binary else (0, 0)
    if start:
        prog.attach_uprobe(binary, fn_name, address=start + offset, pid=pid)
    else:
        prog.attach_uprobe(obj, fn_name, symbol=symbol, pid=pid)

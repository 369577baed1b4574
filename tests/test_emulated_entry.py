"""probes/emulated.py: where an entry uprobe may move to an instruction the
kernel emulates. The choice is pure logic over objdump's text and the bytes
(the cases below); glibc's own lock and unlock are checked as they are here,
and mutexstat's tests run the tool on the moved probes."""
from pytracekit.probes.emulated import choose_offset, emulated_entry, emulated_opcode
from pytracekit.probes.specs import find_binary
from pytracekit.symbolize.disasm import disassemble

# glibc 2.36's pthread_mutex_lock, its first 5 instructions (then `push %rbx`)
LOCK = {0x100: "mov    0x10(%rdi),%eax", 0x103: "mov    %eax,%edx",
        0x105: "and    $0x17f,%edx", 0x10b: "and    $0x7c,%eax",
        0x10e: "jne    1c0 <f+0xc0>", 0x114: "push   %rbx"}
LOCK_CODE = bytes.fromhex("8b4710" "89c2" "81e27f010000" "83e07c" "0f85ac000000" "53")
END = 0x115


def test_the_first_emulated_instruction_past_harmless_ones():
    assert choose_offset(0x100, LOCK, LOCK_CODE, END, ("rdi",)) == 0xe


def test_an_emulated_entry_stays_at_the_entry():
    insns = {0x100: "push   %rbp", 0x101: "mov    %rsp,%rbp"}
    assert choose_offset(0x100, insns, bytes.fromhex("55" "4889e5"), 0x104, ("rdi",)) == 0


def test_a_written_kept_register_keeps_the_entry():
    for write in ("mov    0x10(%rsi),%edi", "sub    $0x10,%rsp", "mov    %rsp,%rbp",
                  "xor    %dil,%dil"):
        insns = {**LOCK, 0x100: write}
        assert choose_offset(0x100, insns, LOCK_CODE, END, ("rdi",)) == 0, write
    # edx is an argument register too, when the probe reads it
    assert choose_offset(0x100, LOCK, LOCK_CODE, END, ("rdi", "rdx")) == 0


def test_memory_writes_and_unknown_instructions_keep_the_entry():
    for first in ("mov    %eax,0x10(%rdi)", "pop    %rbx", "lock cmpxchg %edx,(%rdi)",
                  "ret", "call   *%rax"):
        assert choose_offset(0x100, {**LOCK, 0x100: first}, LOCK_CODE, END, ("rdi",)) == 0


def test_a_branch_into_the_skipped_bytes_keeps_the_entry():
    # a jump back to the second instruction: those passes would hit the probe too
    looping = {**LOCK, 0x114: "jmp    103 <f+0x3>"}
    assert choose_offset(0x100, looping, LOCK_CODE, END, ("rdi",)) == 0
    # and a branch to the chosen instruction itself
    to_it = {**LOCK, 0x114: "jne    10e <f+0xe>"}
    assert choose_offset(0x100, to_it, LOCK_CODE, END, ("rdi",)) == 0
    # prefixed, or written as objdump writes a headerless binary's branches
    for branch in ("bnd jmp 103 <f+0x3>", "notrack jmp 103", "jmp    0x103"):
        assert choose_offset(0x100, {**LOCK, 0x114: branch}, LOCK_CODE, END, ("rdi",)) == 0
    # another symbol inside them (entered from elsewhere)
    assert choose_offset(0x100, LOCK, LOCK_CODE, END, ("rdi",), entries={0x105}) == 0
    # a branch to the entry is fine: that pass goes through the new point too
    assert choose_offset(0x100, {**LOCK, 0x114: "jmp    100 <f>"}, LOCK_CODE, END,
                         ("rdi",)) == 0xe


def test_emulated_encodings():
    assert emulated_opcode(bytes.fromhex("0f85ac000000"))   # jne rel32
    assert emulated_opcode(bytes.fromhex("75fe"))           # jne rel8
    assert emulated_opcode(bytes.fromhex("e9f6feffff"))     # jmp rel32
    assert emulated_opcode(bytes.fromhex("e800000000"))     # call rel32
    assert emulated_opcode(bytes.fromhex("4154"))           # push %r12
    assert not emulated_opcode(bytes.fromhex("66e90000"))   # a 0x66 prefix: single-stepped
    assert not emulated_opcode(bytes.fromhex("8b4710"))     # mov
    assert not emulated_opcode(bytes.fromhex("ffe0"))       # jmp *%rax
    assert not emulated_opcode(b"")


def test_glibc_lock_and_unlock_move_to_a_branch():
    """This machine's libc: both start with a single-stepped mov; the chosen
    point is a direct branch every call reaches, rdi untouched before it."""
    libc = find_binary("c")
    for symbol in ("pthread_mutex_lock", "pthread_mutex_unlock"):
        start, offset = emulated_entry(libc, symbol)
        assert start and offset > 0, symbol
        insns = disassemble(libc, start, start + offset + 16)
        assert insns[start + offset].split()[0] in ("jne", "jmp"), insns


def test_several_versions_or_an_ifunc_stay_by_name():
    """pthread_cond_wait has two versioned symbols at two addresses, memcpy is
    an IFUNC resolver: neither is moved (attached by name, at the entry)."""
    libc = find_binary("c")
    assert emulated_entry(libc, "pthread_cond_wait") == (0, 0)
    assert emulated_entry(libc, "memcpy") == (0, 0)
    assert emulated_entry(libc, "no_such_function_here") == (0, 0)

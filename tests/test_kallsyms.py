"""The kernel's symbol table (pytracekit/symbolize/kallsyms.py): parsed from
kallsyms text, kept per boot in the cache, and naming like BCC on this kernel."""
from __future__ import annotations

import os
import random
import struct
import re

import pytest

from pytracekit.symbolize import kallsyms, symbols
from pytracekit.symbolize.symbols import Symbolizer

TEXT = b"""\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _text
ffffffff81000000 t srso_alias_untrain_ret
ffffffff81000100 T do_one
ffffffff81000200 d some_data
ffffffff81000300 T __do_two
ffffffff81000300 T do_two
ffffffff81000400 T _etext
ffffffffc0001000 t mod_a_first\t[mod_a]
ffffffffc0001100 t mod_a_last\t[mod_a]
ffffffffc0002000 t bpf_prog_1234_handler\t[bpf]
ffffffffc0003000 t ftrace_trampoline\t[__builtin__ftrace]
ffffffffc0004000 T mod_b_only\t[mod_b]
ffffffffc0004100 t mod_b_end\t[mod_b]
"""


def test_lookup_names_the_function_and_its_offset():
    table = kallsyms.parse(TEXT)
    assert table.lookup(0xffffffff81000100) == ("do_one", "kernel", 0)
    assert table.lookup(0xffffffff81000123) == ("do_one", "kernel", 0x23)
    # data symbols are never frames: do_one runs on to the next function
    assert table.lookup(0xffffffff81000280) == ("do_one", "kernel", 0x180)
    assert table.lookup(0xffffffffc0001010) == ("mod_a_first", "mod_a", 0x10)


def test_aliases_keep_the_global_then_the_fewest_underscores():
    table = kallsyms.parse(TEXT)
    assert table.lookup(0xffffffff81000000)[0] == "_text"   # T over t, before underscores
    assert table.lookup(0xffffffff81000300)[0] == "do_two"   # then the fewest underscores
    assert len(table) == 8   # less the data symbol, the zero address, two aliases, [bpf], [__builtin__ftrace]


def test_what_lies_between_modules_or_past_a_module_is_left_to_a_live_read():
    table = kallsyms.parse(TEXT)
    # BPF programs and trampolines come and go: never kept, and the gap around
    # them (mod_a's last symbol to mod_b's first) is not named from the table
    assert table.lookup(0xffffffffc0002010) is None
    assert table.lookup(0xffffffffc0003010) is None
    assert table.lookup(0xffffffffc0001110) is None   # past mod_a's last symbol
    assert table.lookup(0xffffffffc0004110) is None   # past the last symbol
    assert table.lookup(0xffffffff80000000) is None   # below the first
    assert all("bpf_prog" not in table._entry(i)[0] for i in range(len(table)))


def test_packed_table_reads_back_and_damage_is_refused():
    table = kallsyms.parse(TEXT)
    again = kallsyms.KernelSymbolTable.unpacked(table.packed())
    assert again is not None and again.source == "cache"
    assert list(again.addresses) == list(table.addresses)
    assert [again._entry(i) for i in range(len(again))] == \
        [table._entry(i) for i in range(len(table))]
    assert kallsyms.KernelSymbolTable.unpacked(table.packed()[:-1]) is None
    assert kallsyms.KernelSymbolTable.unpacked(b"not a table") is None


def test_kptr_restricted_text_gives_no_table():
    hidden = re.sub(rb"(?m)^[0-9a-f]{16}", b"0" * 16, TEXT)
    assert len(kallsyms.parse(hidden)) == 0


# -- on this kernel -------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="kallsyms shows addresses to root only")


def _live_text() -> bytes:
    text = kallsyms.read_kallsyms() or b""
    if not re.search(rb"(?m)^ffff[0-9a-f]{12} [tT] ", text):
        pytest.skip("kallsyms shows no kernel addresses here (kptr_restrict)")
    return text


@needs_root
def test_names_match_bccs_on_this_kernel():
    from bcc import BPF
    text = _live_text()
    table = kallsyms.parse(text)
    counts: dict[int, int] = {}
    for line in text.splitlines():
        address, kind = line.split()[:2]
        if kind not in b"bBdDrR":
            counts[int(address, 16)] = counts.get(int(address, 16), 0) + 1
    symbolizer = Symbolizer(show_module=True, show_offset=True)
    symbolizer._kernel_table = table
    rng = random.Random(7)
    compared = 0
    for _ in range(600):
        i = rng.randrange(len(table) - 1)
        start, end = table.addresses[i], table.addresses[i + 1]
        if counts.get(start) != 1:   # aliases: BCC's pick among them is its sort's
            continue
        address = rng.randrange(start, end)
        if table.lookup(address) is None:
            continue
        expected = BPF.ksym(address, show_module=True, show_offset=True).decode()
        assert symbolizer.kernel(address).name == expected
        compared += 1
    assert compared > 400


@needs_root
def test_bpf_programs_are_named_by_a_live_read(tmp_path, monkeypatch):
    """Programs of its own, one loaded before BCC read kallsyms and one after (a
    long run names programs others load later; BCC's read is per process and named
    such an address by the symbol below it: `_einittext` far below, seen in CI, or
    the program loaded just before, also seen in CI)."""
    from bcc import BPF
    from pytracekit.kernel import bpfsys
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(symbols, "_bcc_kallsyms_reread_at", [float("-inf")])
    monkeypatch.setattr(symbols, "_bcc_kallsyms_programs", [None])
    _live_text()
    exit_0 = struct.pack("<BBhi", 0xb7, 0, 0, 0) + struct.pack("<BBhi", 0x95, 0, 0, 0)
    fds = []
    try:
        for name in (b"ptk_kallsyms_a", b"ptk_kallsyms_b"):
            if fds:   # BCC has read kallsyms before the second program is loaded
                BPF._sym_caches.pop(-1, None)
                BPF.ksym(0xffffffff81000000)
            fd, err, log = bpfsys.prog_load(1, name, exit_0, b"GPL", 0)  # a socket filter
            assert fd >= 0, (err, log)
            fds.append(fd)
        text = _live_text()
        for name in ("ptk_kallsyms_a", "ptk_kallsyms_b"):
            found = re.search(rb"(?m)^([0-9a-f]{16}) t (bpf_prog_[0-9a-f]{16}_%s)\t\[bpf\]$"
                              % name.encode(), text)
            assert found, "a loaded program is not in /proc/kallsyms"
            address, full = int(found.group(1), 16), found.group(2).decode()
            symbolizer = Symbolizer()
            assert symbolizer.kernel(address + 4).name == full
            assert symbolizer._kernel_table.lookup(address + 4) is None
    finally:
        for fd in fds:
            os.close(fd)


@needs_root
def test_the_table_is_kept_per_boot_root_only_and_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path))
    _live_text()
    first = kallsyms.load()
    assert first.source == "kallsyms"
    entries = list((tmp_path / "kallsyms").iterdir())
    assert [e.name for e in entries] == [f"{kallsyms.cache_key()}.syms"]
    assert entries[0].stat().st_mode & 0o777 == 0o600   # the kernel's layout: root's
    second = kallsyms.load()
    assert second.source == "cache"
    assert list(second.addresses) == list(first.addresses)
    # another boot (or module set): read again, and the old table goes
    monkeypatch.setattr(kallsyms, "cache_key", lambda: "0" * 32)
    assert kallsyms.load().source == "kallsyms"
    assert [e.name for e in (tmp_path / "kallsyms").iterdir()] == ["0" * 32 + ".syms"]


@needs_root
def test_a_table_someone_else_could_have_written_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path))
    _live_text()
    kallsyms.load()
    path = tmp_path / "kallsyms" / f"{kallsyms.cache_key()}.syms"
    os.chown(path, 65534, 65534)   # nobody's
    assert kallsyms.load().source == "kallsyms"
    assert path.stat().st_uid == 0   # replaced by root's
    os.chmod(tmp_path / "kallsyms", 0o777)   # a directory anyone can write
    assert kallsyms.load().source == "kallsyms"


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@needs_root
def test_reading_kallsyms_again_frees_bccs_last_read():
    """BCC's Python never frees its kernel symbol table (~13 MB here): each read
    made again when the loaded programs changed kept the last one (a process-churn
    test's RSS grew 30 MB in CI). Six more reads leave the RSS where the first did."""
    from bcc import BPF
    symbols._drop_bcc_kernel_symbols()
    BPF.ksym(0xffffffff81000000)
    before = _rss_kb()
    for _ in range(6):
        symbols._drop_bcc_kernel_symbols()
        BPF.ksym(0xffffffff81000000)
    assert _rss_kb() - before < 20 << 10   # without freeing: +77 MB

"""The user-space symbolizer: every place symbols come from, exited processes,
perf maps. Real binaries built from the workload; no BPF needed."""
import os
import subprocess
import time

import pytest

from pytracekit.symbolize.elfsyms import ElfSymbols
from pytracekit.symbolize.symbols import PerfMap, Symbolizer, UserSymbols


def _nm_address(binary: str, name: str) -> int:
    out = subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
    return int(next(l.split()[0] for l in out.splitlines() if l.endswith(" " + name)), 16)


def _load_base(pid: int, binary: str) -> int:
    """Address where the binary's first page is mapped (a PIE's load bias)."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            if line.rstrip().endswith(os.path.realpath(binary)) and " 00000000 " in line:
                return int(line.split("-")[0], 16)
    raise AssertionError("binary not mapped")


def _run_and_resolve(binary: str, reference: str, name: str, after_exit: bool):
    proc = subprocess.Popen([binary, "spin", "0.3"])
    try:
        time.sleep(0.1)
        users = UserSymbols()
        users.remember(proc.pid)
        address = _load_base(proc.pid, binary) + _nm_address(reference, name) + 4
    finally:
        proc.wait()
    if not after_exit:
        raise AssertionError("unused")
    return users.resolve(address, proc.pid)


def test_exited_process_is_still_resolved(workload):
    assert _run_and_resolve(workload, workload, "spin_inner", True) == ("spin_inner", "workload", 4)


def test_gnu_debugdata_minidebuginfo(workload, tmp_path):
    mini = tmp_path / "mini"
    subprocess.run(["strip", "--strip-debug", "-o", str(mini), workload], check=True)
    subprocess.run(["xz", str(mini)], check=True)
    stripped = tmp_path / "workload"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload], check=True)
    subprocess.run(["objcopy", f"--add-section=.gnu_debugdata={mini}.xz", str(stripped)],
                   check=True)
    syms = ElfSymbols.load(str(stripped))
    assert "gnu_debugdata" in syms.sources
    assert _run_and_resolve(str(stripped), workload, "spin_outer", True)[0] == "spin_outer"


def test_gnu_debuglink_debug_file(workload, tmp_path):
    debug = tmp_path / "workload.debug"
    subprocess.run(["objcopy", "--only-keep-debug", workload, str(debug)], check=True)
    stripped = tmp_path / "workload"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload], check=True)
    subprocess.run(["objcopy", f"--add-gnu-debuglink={debug}", str(stripped)], check=True,
                   cwd=tmp_path)
    syms = ElfSymbols.load(str(stripped))
    # a stripped file has no .symtab: names from the debug file (and PLT stubs)
    assert syms.sources == [f"debug file {debug}", "plt"]
    assert _run_and_resolve(str(stripped), workload, "child_spin", True)[0] == "child_spin"


def test_build_id_debug_file_gives_static_libc_functions():
    libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
    syms = ElfSymbols.load(libc)
    if not any(s.startswith("debug file /usr/lib/debug/.build-id/") for s in syms.sources):
        pytest.skip("libc6-dbg is not installed")
    # static, so only in the debug file's .symtab
    assert "__libc_start_call_main" in syms.names


def test_unmapped_address_is_unknown_and_counted(workload):
    proc = subprocess.Popen([workload, "spin", "0.2"])
    try:
        time.sleep(0.05)
        sym = Symbolizer()
        sym.remember(proc.pid)
        frame = sym.user(0x10, proc.pid)
        sym.user(0x10, proc.pid)
    finally:
        proc.wait()
    assert frame.name == "[unknown]+0x10"   # no mapping at all: only the address
    assert frame.unknown
    assert sym.unknown_frames == 2


def _stripped_copy(workload: str, tmp_path) -> str:
    stripped = tmp_path / "workload"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload], check=True)
    return str(stripped)


def test_unnamed_frame_is_module_plus_link_time_address(workload, tmp_path):
    """A stripped program: its static functions have no name anywhere, so the
    frame is `workload+0xVADDR` (the address nm gives in the unstripped
    build), counted as unknown, and two addresses stay two frames."""
    stripped = _stripped_copy(workload, tmp_path)
    proc = subprocess.Popen([stripped, "spin", "0.3"])
    try:
        time.sleep(0.1)
        sym = Symbolizer()
        sym.remember(proc.pid)
        base = _load_base(proc.pid, stripped)
        vaddr = _nm_address(workload, "spin_inner") + 4
        frame = sym.user(base + vaddr, proc.pid)
        other = sym.user(base + vaddr + 1, proc.pid)
        start = sym.user(base + _nm_address(workload, "_start") + 2, proc.pid)
    finally:
        proc.wait()
    assert frame.name == f"workload+{vaddr:#x}"
    assert (frame.module, frame.address, frame.vaddr) == ("workload", base + vaddr, vaddr)
    assert frame.unknown and other.unknown and other.name == f"workload+{vaddr + 1:#x}"
    assert frame != other
    assert start.name == "_start" and not start.unknown   # the entry point, named
    assert sym.unknown_frames == 2
    assert frame.image.path == stripped
    assert frame.image.build_id == ElfSymbols.load(workload).image.build_id()


def test_library_plt_frame_is_named_at_plt(workload):
    """A return address inside a PLT stub of the running program (as a
    sample inside the stub gives) is `name@plt`, not `_init`."""
    proc = subprocess.Popen([workload, "spin", "0.3"])
    try:
        time.sleep(0.1)
        sym = Symbolizer()
        sym.remember(proc.pid)
        base = _load_base(proc.pid, workload)
        stubs = ElfSymbols.load(workload).image.plt_stubs()
        frames = [sym.user(base + address + 2, proc.pid) for address, _s, _n in stubs]
    finally:
        proc.wait()
    assert stubs and [f.name for f in frames] == [n for _a, _s, n in stubs]
    assert sym.unknown_frames == 0


def test_nothing_is_kept_above_start():
    from pytracekit.model import Frame
    from pytracekit.symbolize.symbols import above_start_dropped
    stack = [Frame("leaf"), Frame("main"), Frame("__libc_start_main"), Frame("_start"),
             Frame("[unknown]+0x1")]
    assert above_start_dropped(stack) == stack[:4]
    assert above_start_dropped(stack[:2]) == stack[:2]


def test_kernel_address_outside_kallsyms_names_kernel_or_module():
    from pytracekit.symbolize.symbols import KernelModules
    mods = KernelModules()
    mods.loaded, mods.ranges = True, [(0xffffffffc0000000, 0x2000, "nf_tables")]
    assert mods.name(0xffffffffc0000123) == "nf_tables.ko+0x123"
    assert mods.name(0xffffffff81000010) == "[kernel.kallsyms]+0xffffffff81000010"


def test_frame_cache_and_binaries_are_bounded(workload, monkeypatch):
    import pytracekit.symbolize.symbols as symbols
    monkeypatch.setattr(symbols, "FRAME_CACHE_ENTRIES", 8)
    sym = Symbolizer()
    for address in range(100):
        sym.user(address, 1 << 22)     # no such pid: [unknown]+0x..
    assert len(sym._cache) == 8
    users = UserSymbols()
    users.binaries.budget = len(ElfSymbols.load(workload).names) + 1
    assert users.binary(workload).names    # symbols are parsed on first use ...
    users.binary(workload)                 # ... and weighed from the next use on
    assert users.binaries.total == users.binaries.budget
    users.binary("/usr/bin/xz")
    assert "/usr/bin/xz" in users.binaries and workload not in users.binaries


def test_exited_processes_maps_are_dropped_past_the_limit(workload, monkeypatch):
    import pytracekit.symbolize.symbols as symbols
    monkeypatch.setattr(symbols, "DEAD_PROCESSES_KEPT", 2)
    monkeypatch.setattr(symbols, "SWEEP_EVERY", 1000)
    users = UserSymbols()
    pids = []
    for _ in range(4):
        proc = subprocess.Popen([workload, "spin", "0.05"])
        time.sleep(0.02)
        users.remember(proc.pid)
        proc.wait()
        pids.append(proc.pid)
    live = os.getpid()
    users.remember(live)
    users.sweep()
    assert set(users.processes) == {pids[2], pids[3], live}
    assert users.processes[pids[3]] is not None   # kept: still names its stacks


def test_a_dropped_process_leaves_no_perf_map(workload, monkeypatch):
    # naming a kept dead process's frame looks for its perf map again: the
    # entry goes with its maps (it stayed, one per process seen)
    import pytracekit.symbolize.symbols as symbols
    monkeypatch.setattr(symbols, "DEAD_PROCESSES_KEPT", 1)
    users = UserSymbols()
    dead = []
    for _ in range(2):
        proc = subprocess.Popen([workload, "child"])
        proc.wait()
        dead.append(proc.pid)
    users.remember(dead[0])
    users.sweep()
    users.perf_map(dead[0])
    users.remember(dead[1])
    users.sweep()
    assert dead[0] not in users.processes and dead[0] not in users.perf_maps


def test_perf_map_entries_cover_start_plus_size(tmp_path):
    path = tmp_path / "perf-1.map"
    path.write_text("1000 100 py::old:/a.py\n2000 10 jit_b\n1000 80 py::new:/a.py\nbad line\n")
    pm = PerfMap(str(path))
    assert pm.refresh()
    assert pm.lookup(0x1010) in ("py::old:/a.py", "py::new:/a.py")
    assert pm.lookup(0x1090) == "py::old:/a.py"
    assert pm.lookup(0x200f) == "jit_b"   # sizes are hex too
    assert pm.lookup(0x2010) is None
    assert pm.lookup(0x10) is None


def test_cxx_names_are_demangled():
    from pytracekit.symbolize.symbols import _demangle
    assert _demangle("_ZN3foo3barEv") == "foo::bar()"
    assert _demangle("plain_c") == "plain_c"


USTACKS_PROGRAM = """
#include "vmlinux.h"
struct ptk_ustack { u16 len; u16 flags; u32 pad; u64 frames[127]; };
BPF_HASH(ustacks, u64, struct ptk_ustack, 4096);
int unused(void *ctx) { return 0; }
"""


@pytest.mark.root
def test_unwound_stacks_read_in_one_batch_are_those_read_one_by_one(tmp_path, monkeypatch):
    """collect.stack_maps.prefetch_unwound parses the batch buffers itself: the same
    (frames, fallback) as a lookup per stack, for 3000 stacks of every length."""
    from pytracekit.collect.stack_maps import prefetch_unwound
    from pytracekit.engine.loader import Program
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path / "cache"))
    with Program.from_text("ustacks_batch", USTACKS_PROGRAM) as prog:
        table = prog["ustacks"]
        for h in range(1, 3001):
            value = table.Leaf()
            value.len, value.flags = h % 128, h % 3   # FALLBACK is bit 1; 127 is the most
            for i in range(value.len):
                value.frames[i] = (h << 20) + i
            table[table.Key(h * 7919)] = value
        batched, one_by_one = Symbolizer(), Symbolizer()
        batched.ustacks = one_by_one.ustacks = table
        prefetch_unwound(batched)
        assert len(batched._ustack_cache) == 3000
        for h in range(1, 3001):
            one_by_one._unwound_stack(h * 7919, 0)   # fills its cache by a lookup
            assert batched._ustack_cache.get(h * 7919) == one_by_one._ustack_cache.get(h * 7919)


def _exec_kb_in_maps(pid: int) -> int:
    """The kernel's exec_vm, from the maps: executable, not writable mappings
    ([vsyscall] is the kernel's page, no mapping of the process)."""
    total = 0
    for line in open(f"/proc/{pid}/maps"):
        span, perms = line.split()[:2]
        if "x" in perms and "w" not in perms and not line.rstrip().endswith("[vsyscall]"):
            lo, hi = (int(x, 16) for x in span.split("-"))
            total += (hi - lo) // 1024
    return total


def test_a_snapshot_is_read_again_when_code_is_mapped_not_when_the_heap_grows(monkeypatch):
    # settle checks compare the executable mappings' size (VmExe + VmLib):
    # a heap's growth (here 8 MiB of anonymous memory) re-read the maps
    # before; 64 KiB made executable is a change
    import mmap
    from pytracekit.symbolize import symbols
    monkeypatch.setattr(symbols, "VM_SIZES_FRESH_S", 0.0)   # every call reads /proc
    pid = os.getpid()
    users = UserSymbols()
    users.remember(pid)
    assert users.processes[pid].exec_size == symbols.exec_size_of(pid) == _exec_kb_in_maps(pid)
    whole_before = symbols.vm_sizes_of(pid)[0]
    heap = mmap.mmap(-1, 8 << 20, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        assert symbols.vm_sizes_of(pid)[0] >= whole_before + 8192
        assert not users.maps_changed(pid)
        code = mmap.mmap(-1, 64 << 10, prot=mmap.PROT_READ | mmap.PROT_EXEC)
        try:
            assert symbols.exec_size_of(pid) == users.processes[pid].exec_size + 64
            assert users.maps_changed(pid)
            users.refresh(pid)
            assert not users.maps_changed(pid)
        finally:
            code.close()
    finally:
        heap.close()
    assert users.maps_changed(pid)   # the code unmapped: a change too
    assert symbols.vm_sizes_of(999_999_999) == symbols.GONE

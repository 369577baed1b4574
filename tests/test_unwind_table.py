"""The CFI parser (cfi.py) and the compact unwind tables (unwind_table.py):
every row of Debian's binaries against readelf's interpreted frames, and the
Python unwinder on synthetic stacks. No BPF needed."""
import os
import re
import shutil
import struct
import subprocess
from collections import defaultdict

import pytest

from pytracekit.symbolize.cfi import NO_REG, RA, RBP, cfi_of
from pytracekit.symbolize.elfsyms import ElfImage, map_file
from pytracekit.symbolize.unwind_table import (KIND_CFA_RBP, KIND_CFA_RSP, KIND_END, KIND_NONE,
                                               KIND_PLT, ROW, ModuleRange, Row, UnwindTable,
                                               plt_threshold, unwind_python)

DEBIAN = ["/usr/bin/python3.11", "/lib/x86_64-linux-gnu/libc.so.6",
          "/lib/x86_64-linux-gnu/liblzma.so.5", "/usr/bin/bash"]
REGS = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp"] + [f"r{i}" for i in range(8, 16)]
_C_OFFSET = re.compile(r"^c[+-]\d+$")
_CELL = re.compile(r"\S+(?: \(\w+\))?")


def _readelf_rows(path: str) -> dict[int, list[tuple[int, str, str, str]]]:
    """FDE start -> [(loc, CFA, rbp, ra)] from readelf's frames-interp, equal
    neighbours merged; rbp/ra as c-N, u (unchanged/undefined) or other."""
    # (readelf exits 1 on libc.so.6 with no message after printing every frame)
    out = subprocess.run(["readelf", "--debug-dump=frames-interp", path], capture_output=True,
                         text=True).stdout
    assert "Contents of the .eh_frame section" in out
    cies: dict[str, list] = {}
    fdes: dict[int, list] = {}
    current, cols, begin = None, [], None
    for line in out.splitlines():
        head = line.split()
        if len(head) >= 4 and head[3] == "CIE":
            current = cies.setdefault(head[0], [])
            continue
        if len(head) >= 4 and head[3] == "FDE":
            m = re.search(r"cie=(\w+) pc=(\w+)\.\.(\w+)", line)
            begin = int(m.group(2), 16)
            current = fdes[begin] = []
            current_cie = cies[m.group(1)]
            fdes[begin] = current
            current.append(("cie", current_cie))
            continue
        if head and head[0] == "LOC":
            cols = head[1:]
            continue
        head = _CELL.findall(line)   # a cell may read "r9 (r9)"
        if current is not None and len(head) == len(cols) + 1 and re.fullmatch(r"[0-9a-f]{16}",
                                                                                head[0]):
            cell = dict(zip(cols, head[1:]))
            rbp = cell.get("rbp", "u")
            ra = cell["ra"]
            current.append((int(head[0], 16), cell["CFA"], _column(rbp), _column(ra)))
    rows = {}
    for begin, entries in fdes.items():
        cie_rows = entries[0][1]
        own = entries[1:] or [(begin, *cie_rows[0][1:])]
        rows[begin] = _merged(own)
    return rows


def _column(text: str) -> str:
    if text in ("u", "s"):
        return "u"
    return text if _C_OFFSET.match(text) else "other"


def _merged(rows):
    out = []
    for row in rows:
        if out and out[-1][0] == row[0]:
            out.pop()
        if out and out[-1][1:] == row[1:]:
            continue
        out.append(row)
    return out


def _our_rows(path: str) -> dict[int, list[tuple[int, str, str, str]]]:
    cfi = cfi_of(ElfImage(map_file(path)))
    result = {}
    for fde in cfi.fdes():
        rows = []
        for loc, rule in cfi.rows(fde):
            cfa = "exp" if rule.cfa_reg == NO_REG else f"{REGS[rule.cfa_reg]}+{rule.cfa_off}"

            def col(reg):
                if reg in rule.saved:
                    return f"c{rule.saved[reg]:+d}"
                return "u" if rule.other.get(reg, "undefined") == "undefined" else "other"
            rows.append((loc, cfa, col(RBP), col(RA)))
        result[fde.begin] = _merged(rows)
    return result


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
@pytest.mark.parametrize("path", DEBIAN)
def test_every_row_matches_readelf(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    theirs, ours = _readelf_rows(path), _our_rows(path)
    assert len(ours) > 300
    assert sorted(theirs) == sorted(ours)
    bad = [b for b in theirs if theirs[b] != ours[b]]
    assert not bad, (hex(bad[0]), theirs[bad[0]], ours[bad[0]])


def test_compact_rows_of_debian_binaries():
    """Kinds as measured in docs/design/unwinding.md §3.1: nearly every row is
    CFA=rsp/rbp+N with RA at CFA-8; each binary's .plt stub is one PLT row."""
    libc = UnwindTable.from_image(ElfImage(map_file(DEBIAN[1])))
    kinds = libc.kinds()
    assert kinds["plt"] == 1 and kinds["end"] >= 1
    assert kinds["cfa_rsp"] + kinds["cfa_rbp"] > 0.85 * len(libc.rows)
    lzma = UnwindTable.from_image(ElfImage(map_file(DEBIAN[2])))
    assert lzma.kinds()["cfa_rbp"] == 0 and lzma.kinds()["plt"] == 1
    packed = lzma.packed()
    assert len(packed) == 8 * len(lzma.rows)
    assert Row.unpack_from(packed, 8 * 5) == lzma.rows[5]
    assert packed[8 * 5 + 6] == lzma.rows[5].kind   # the byte BPF reads as kind
    assert lzma.pcs == sorted(set(lzma.pcs))
    # row counts as the design's independent count from readelf (gaps included)
    assert len(lzma.rows) == 3600 and lzma.kinds()["none"] == 330
    bash = UnwindTable.from_image(ElfImage(map_file(DEBIAN[3])))
    assert len(bash.rows) == 20668 and bash.kinds()["end"] == 1
    # no two neighbours say the same thing
    assert all(a[1:] != b[1:] for a, b in zip(lzma.rows, lzma.rows[1:]))


def test_plt_expression_threshold():
    assert plt_threshold(bytes.fromhex("770880003f1a3b2a332422")) == 11
    assert plt_threshold(bytes.fromhex("770880003f1a3a2a332422")) == 10
    assert plt_threshold(bytes.fromhex("7708")) is None


def test_start_of_the_main_binary_is_an_end_row(workload_nofp):
    image = ElfImage(map_file(workload_nofp))
    table = UnwindTable.from_image(image)
    start = struct.unpack("<Q", image.data[0x18:0x20])[0]   # e_entry
    assert table.find(start).kind == KIND_END
    nm = subprocess.run(["nm", workload_nofp], capture_output=True, text=True).stdout
    spin_inner = int(next(l.split()[0] for l in nm.splitlines() if l.endswith(" spin_inner")),
                     16)
    row = table.find(spin_inner)
    assert row.pc <= spin_inner and (row.kind, row.cfa_off8) == (KIND_CFA_RSP, 1)


# -- unwind_python on synthetic stacks -------------------------------------------------

def _memory(words: dict[int, int]):
    return lambda address: words.get(address)


def test_python_unwinder_walks_cfa_rows_to_an_end_row():
    # module at 0x10000 (bias 0x10000): leaf [0x100,0x200) rsp+16 with rbp at CFA-16,
    # caller [0x200,0x300) rsp+8, root [0x300,0x400) END
    table = UnwindTable([Row(0x100, KIND_CFA_RSP, 2, 2), Row(0x200, KIND_CFA_RSP, 1),
                         Row(0x300, KIND_END), Row(0x400, KIND_NONE)])
    ranges = [ModuleRange(0x10000, 0x11000, 0x10000, table)]
    sp = 0x7000
    mem = {sp + 8: 0x10210, sp + 0: 0xBB, sp + 16: 0x10310}
    frames, why = unwind_python(ranges, 0x10150, sp, 0xAA, _memory(mem))
    assert frames == [0x10150, 0x10210, 0x10310] and why == "end"


def test_python_unwinder_takes_frame_pointer_steps_without_cfi():
    # a JIT range without a table between two CFI frames
    table = UnwindTable([Row(0x100, KIND_CFA_RBP, 2, 2), Row(0x200, KIND_END),
                         Row(0x300, KIND_NONE)])
    ranges = [ModuleRange(0x10000, 0x11000, 0x10000, table),
              ModuleRange(0x20000, 0x21000, 0, None)]
    sp, bp = 0x7000, 0x7010
    mem = {bp + 8: 0x10150, bp: 0x7040,            # JIT frame: FP step
           0x7040 + 8: 0x10250, 0x7040: 0}         # CFA=rbp+16, rbp at CFA-16
    frames, why = unwind_python(ranges, 0x20010, sp, bp, _memory(mem))
    assert frames == [0x20010, 0x10150, 0x10250] and why == "end"
    # a return address outside every mapping stops the walk, never guessed
    mem[bp + 8] = 0x999999
    assert unwind_python(ranges, 0x20010, sp, bp, _memory(mem)) == ([0x20010], "bad_ra")


def test_python_unwinder_plt_rule_and_depth_limit():
    table = UnwindTable([Row(0x100, KIND_PLT, 1, 11), Row(0x200, KIND_CFA_RSP, 1)])
    ranges = [ModuleRange(0x10000, 0x11000, 0x10000, table)]
    sp = 0x7000
    # pc & 15 = 0xb >= 11: CFA = rsp + 16
    frames, _ = unwind_python(ranges, 0x1010b, sp, 0, _memory({sp + 8: 0x10201}), 2)
    assert frames == [0x1010b, 0x10201]
    frames, why = unwind_python(ranges, 0x10105, sp, 0, _memory({sp: 0x10201}), 2)
    assert frames == [0x10105, 0x10201] and why == "depth"


def test_tables_are_cached_by_build_id(tmp_path, monkeypatch, workload_nofp):
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path))   # the header cache's root
    image = ElfImage(map_file(workload_nofp))
    first = UnwindTable.cached(image, image.build_id())
    files = list((tmp_path / "unwind").rglob("*.rows"))
    assert [f.name for f in files] == [f"{image.build_id()}.rows"]
    assert files[0].read_bytes() == first.packed()
    assert files[0].stat().st_mode & 0o777 == 0o644
    files[0].write_bytes(first.packed()[:16])   # the cache is what is read back
    assert UnwindTable.cached(image, image.build_id()).rows == first.rows[:2]


@pytest.mark.root
@pytest.mark.parametrize("tamper", ["chown-table", "chmod-table", "link-table", "chmod-dir"])
def test_table_cache_another_user_could_write_is_refused(tmp_path, monkeypatch, workload_nofp,
                                                         tamper):
    # the header cache's rules (tests/test_safety_headers.py): the unwinder refuses
    # to start (one line), and a table it may not trust is never read
    from pytracekit.errors import PytracekitError
    from pytracekit.symbolize.unwind_table import cache_dir, check_cache
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path / "cache"))
    image = ElfImage(map_file(workload_nofp))
    good = UnwindTable.cached(image, image.build_id())
    check_cache()
    table = cache_dir() / f"{image.build_id()}.rows"
    table.write_bytes(good.packed()[:16])   # what a planted table would say
    target = table
    if tamper == "chown-table":
        os.chown(table, 65534, 65534)
    elif tamper == "chmod-table":
        table.chmod(0o666)
    elif tamper == "link-table":
        real = tmp_path / "real.rows"
        table.rename(real)
        table.symlink_to(real)
    else:
        cache_dir().chmod(0o777)
        target = cache_dir()
    with pytest.raises(PytracekitError) as err:
        check_cache()
    assert str(err.value).startswith(f"refusing the unwind table cache {target}: ")
    assert "PYTRACEKIT_CACHE" in str(err.value)
    if target == table:   # read anyway (another tool's code path): compiled afresh
        assert UnwindTable.cached(image, image.build_id()).rows == good.rows


def test_debug_frame_fills_what_eh_frame_leaves_out(tmp_path):
    # -fno-asynchronous-unwind-tables -g: .debug_frame for the program's code,
    # .eh_frame (the C runtime's) for _start only
    from conftest import DEBUG_FRAME_FLAGS, WORKLOAD_SRC
    out = tmp_path / "wl"
    subprocess.run(["gcc", *DEBUG_FRAME_FLAGS, "-o", str(out), str(WORKLOAD_SRC)], check=True)
    image = ElfImage(map_file(out))
    assert image.section(".eh_frame") is not None and image.section(".debug_frame") is not None
    table = UnwindTable.from_image(image)
    start = struct.unpack("<Q", image.data[0x18:0x20])[0]
    assert table.find(start).kind == KIND_END   # from .eh_frame
    nm = subprocess.run(["nm", str(out)], capture_output=True, text=True).stdout
    spin_inner = int(next(l.split()[0] for l in nm.splitlines() if l.endswith(" spin_inner")),
                     16)
    row = table.find(spin_inner)   # from .debug_frame
    assert row.pc <= spin_inner and (row.kind, row.cfa_off8) == (KIND_CFA_RSP, 1)


def test_repeated_misses_of_unchanged_mappings_back_off():
    from pytracekit.symbolize.symbols import Mapping, ProcessMaps
    from pytracekit.symbolize.unwinder import MISS_INTERVAL_S, Unwinder

    class Users:
        def __init__(self):
            self.processes = {7: ProcessMaps(7, [Mapping(0x1000, 0x2000, 0, "/x")], [0x1000])}

        def refresh(self, pid):
            old = self.processes[pid]
            self.processes[pid] = ProcessMaps(pid, list(old.mappings), list(old.starts))

    unwinder = Unwinder.__new__(Unwinder)   # no BPF maps: only the miss bookkeeping
    unwinder.users, unwinder.last_miss, unwinder.loaded, unwinder.pending = Users(), {}, {}, {}
    assert unwinder.on_miss(7) and 7 in unwinder.pending
    assert not unwinder.on_miss(7)   # within the interval
    assert unwinder.last_miss[7][1] == 2 * MISS_INTERVAL_S


def test_plt_rows_of_a_file_without_eh_frame_are_the_linkers(tmp_path, workload_debug_frame):
    # the same build before its .eh_frame was removed (conftest) is the oracle:
    # the linker wrote CFI for .plt and .plt.got there, which we synthesize
    from conftest import DEBUG_FRAME_FLAGS, WORKLOAD_SRC
    with_eh = tmp_path / "wl"
    subprocess.run(["gcc", *DEBUG_FRAME_FLAGS, "-o", str(with_eh), str(WORKLOAD_SRC)], check=True)
    ours = UnwindTable.from_image(ElfImage(map_file(workload_debug_frame)))
    linker = UnwindTable.from_image(ElfImage(map_file(with_eh)))
    image = ElfImage(map_file(workload_debug_frame))
    assert image.section(".eh_frame") is None
    checked = 0
    for name in (".plt", ".plt.got", ".plt.sec"):
        sec = image.section(name)
        for address in range(sec.addr, sec.addr + sec.size) if sec else ():
            assert ours.find(address)[1:] == linker.find(address)[1:], (name, hex(address))
            checked += 1
    assert checked >= 64 and ours.kinds()["plt"] == 1


def test_a_packed_table_finds_what_the_row_table_finds():
    # first samples keep tables packed (12 bytes a row): the same row for every address
    from pytracekit.symbolize.unwind_table import ROW, PackedTable, Row, UnwindTable
    rows = [Row(0x1000, 1, 2, 0), Row(0x1004, 2, 3, 1), Row(0x1010, 0), Row(0x2000, 1, 5, 2)]
    data = b"".join(ROW.pack(r.pc, r.cfa_off8, r.kind, r.rbp_off8) for r in rows)
    table, packed = UnwindTable.from_packed(data), PackedTable(data)
    assert table.rows == rows
    for address in range(0xff0, 0x2010):
        assert packed.find(address) == table.find(address), hex(address)
    assert packed.find(0xfff) is None and packed.find(0x1003) == rows[0]


def test_a_file_without_a_build_id_is_compiled_once_per_content(tmp_path, monkeypatch,
                                                                  workload_nofp):
    # no place on disk (the cache is by build id): kept in memory by its bytes
    from pytracekit.symbolize import unwind_table
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(unwind_table, "_UNNAMED", unwind_table.OrderedDict())
    compiles = []
    real = UnwindTable.from_image.__func__
    monkeypatch.setattr(UnwindTable, "from_image",
                        classmethod(lambda cls, *a: compiles.append(1) or real(cls, *a)))
    data = bytearray(map_file(workload_nofp))
    image = ElfImage(bytes(data))
    want = UnwindTable.from_image(image).packed()
    compiles.clear()
    assert UnwindTable.cached_packed(image, "", "/a") == want
    assert UnwindTable.cached_packed(ElfImage(bytes(data)), "", "/a") == want
    assert len(compiles) == 1 and not list(tmp_path.rglob("*.rows"))
    eh_frame = image.section(".eh_frame")
    data[eh_frame.offset + eh_frame.size - 1] ^= 1   # other CFI at the same path: compiled again
    UnwindTable.cached_packed(ElfImage(bytes(data)), "", "/a")
    assert len(compiles) == 2

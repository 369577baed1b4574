"""Names from everything a user has (elfsyms.py), checked against binutils:
PLT stubs as objdump labels them, zero-size symbols kept inside their
section, the entry point of a stripped program, .dynsym-only libraries,
build-id debug files. Pure: no BPF."""
import os
import re
import shutil
import subprocess

import pytest

from pytracekit.symbolize import elfsyms
from pytracekit.symbolize.elfsyms import ElfSymbols, load_image

DEBIAN = ["/usr/bin/python3.11", "/usr/lib/x86_64-linux-gnu/libc.so.6",
          "/usr/lib/x86_64-linux-gnu/liblzma.so.5", "/usr/bin/bash", "/usr/bin/xz"]


def objdump_plt_labels(path: str) -> set[tuple[int, str]]:
    out = subprocess.run(["objdump", "-d", path], capture_output=True, text=True,
                         check=True).stdout
    return {(int(a, 16), n) for a, n in re.findall(r"^([0-9a-f]+) <(.*@plt)>:", out, re.M)}


def readelf_symbol(path: str, name: str) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-sW", path], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[7] == name:
            return int(f[1], 16), int(f[2], 0)
    raise AssertionError(f"{name} not in {path}")


def section(path: str, name: str) -> tuple[int, int]:
    out = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True,
                         check=True).stdout
    m = re.search(rf"\] {re.escape(name)}\s+\S+\s+([0-9a-f]+) [0-9a-f]+ ([0-9a-f]+)", out)
    assert m, name
    return int(m.group(1), 16), int(m.group(2), 16)


@pytest.fixture(scope="module")
def ibt_program(tmp_path_factory) -> str:
    """A program linked with IBT PLTs: .plt (push stubs), .plt.sec, .plt.got."""
    d = tmp_path_factory.mktemp("ibt")
    src = d / "ibt.c"
    src.write_text('#include <stdio.h>\n#include <stdlib.h>\n'
                   'int main(int c, char **v) { void *p = malloc(c); printf("%p\\n", p);'
                   ' free(p); return 0; }\n')
    out = d / "ibt"
    subprocess.run(["gcc", "-O1", "-fcf-protection=full", "-Wl,-z,ibtplt", "-o", str(out),
                    str(src)], check=True)
    return str(out)


@pytest.mark.parametrize("path", DEBIAN)
def test_plt_stubs_are_named_as_objdump_labels_them(path):
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    path = os.path.realpath(path)
    oracle = objdump_plt_labels(path)
    syms = ElfSymbols.load(path)
    assert {(a, n) for a, _s, n in syms.image.plt_stubs()} == oracle
    assert oracle, "every one of these has PLT stubs"
    for address, name in oracle:   # anywhere inside the stub, the stub's name
        assert syms.lookup(address + 3) == (name, 3)


def test_python311_has_494_plt_stubs():
    if not os.path.exists("/usr/bin/python3.11"):
        pytest.skip("python3.11 is not installed")
    assert len(load_image("/usr/bin/python3.11").plt_stubs()) == 494


def test_plt_sec_and_plt_got_stubs(ibt_program):
    oracle = objdump_plt_labels(ibt_program)
    assert {n for _a, n in oracle} == {"free@plt", "printf@plt", "malloc@plt",
                                       "__cxa_finalize@plt"}
    assert {(a, n) for a, _s, n in load_image(ibt_program).plt_stubs()} == oracle
    sec_start, _ = section(ibt_program, ".plt.sec")
    assert any(a >= sec_start for a, _n in oracle)


def test_zero_size_init_is_not_stretched_over_the_plt(ibt_program):
    init, size = readelf_symbol(ibt_program, "_init")
    assert size == 0
    init_start, init_size = section(ibt_program, ".init")
    plt_start, plt_size = section(ibt_program, ".plt")
    syms = ElfSymbols.load(ibt_program)
    assert syms.lookup(init + 2) == ("_init", 2)
    assert syms.lookup(init_start + init_size - 1)[0] == "_init"
    for address in range(plt_start, plt_start + plt_size, 4):   # .plt's push stubs: unnamed
        assert syms.lookup(address) is None


def test_stripped_program_entry_is_start(workload, tmp_path):
    stripped = tmp_path / "workload"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload], check=True)
    start, size = readelf_symbol(workload, "_start")
    syms = ElfSymbols.load(str(stripped))
    assert "symtab" not in syms.sources
    assert load_image(str(stripped)).entry == start
    assert syms.lookup(start + 5) == ("_start", 5)
    assert syms.lookup(start + size - 1)[0] == "_start"
    assert syms.lookup(start + size) is None    # not stretched over the code after it


def test_dynsym_only_library_names_its_exports():
    lib = os.path.realpath("/usr/lib/x86_64-linux-gnu/liblzma.so.5")
    if not os.path.exists(lib):
        pytest.skip("liblzma is not installed")
    assert ".symtab" not in {s.name for s in load_image(lib).sections}
    address, size = readelf_symbol(lib, "lzma_code@@XZ_5.0")
    assert ElfSymbols.load(lib).lookup(address + size // 2) == ("lzma_code", size // 2)


def test_build_id_debug_file(workload, tmp_path, monkeypatch):
    build_id = load_image(workload).build_id()
    out = subprocess.run(["readelf", "-n", workload], capture_output=True, text=True).stdout
    assert build_id and f"Build ID: {build_id}" in out
    root = tmp_path / "debug"
    target = root / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    target.parent.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", workload, str(target)], check=True)
    stripped = tmp_path / "workload"
    subprocess.run(["strip", "--strip-all", "-o", str(stripped), workload], check=True)
    monkeypatch.setattr(elfsyms, "DEBUG_ROOT", root)
    syms = ElfSymbols.load(str(stripped))
    assert syms.sources[0] == f"debug file {target}"
    address, _ = readelf_symbol(workload, "spin_inner")
    assert syms.lookup(address + 1) == ("spin_inner", 1)


def test_build_id_from_pt_note_without_sections(workload, tmp_path):
    """A file whose section headers are gone still has its PT_NOTE segment."""
    data = bytearray(open(workload, "rb").read())
    data[0x28:0x30] = bytes(8)          # e_shoff
    data[0x3C:0x40] = bytes(4)          # e_shnum, e_shstrndx
    path = tmp_path / "nosections"
    path.write_bytes(bytes(data))
    image = load_image(str(path))
    assert image.sections == []
    assert image.build_id() == load_image(workload).build_id()


def test_mapping_holds_no_file_descriptor(workload):
    before = len(os.listdir("/proc/self/fd"))
    images = [load_image(workload) for _ in range(50)]
    assert len(os.listdir("/proc/self/fd")) == before
    assert all(i.build_id() == images[0].build_id() for i in images)

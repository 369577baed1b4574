"""Every frame attributable, through the tools (real probes): a stripped
program's frames are MODULE+0xVADDR (one box per address, mapping back to
the function nm names in the unstripped build), PLT stubs are name@plt, and
cprofile's pprof carries real mappings (range, file offset, build id, main
binary first) that readelf confirms."""
import re
import subprocess
from pathlib import Path

import pytest

from conftest import pytracekit
from pytracekit.symbolize.elfsyms import load_image
from pytracekit.render.pprof import parse
from pytracekit.symbolize.symbols import NOT_LOADED


def nm_functions(binary: str) -> list[tuple[int, int, str]]:
    out = subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                         text=True, check=True).stdout
    funcs = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 4 and f[2] in "tT":
            funcs.append((int(f[0], 16), int(f[1], 16), f[3]))
    return funcs


def function_at(funcs, vaddr: int) -> str | None:
    return next((n for a, s, n in funcs if a <= vaddr < a + s), None)


@pytest.fixture
def stripped(workload, tmp_path) -> str:
    path = tmp_path / "workload"
    subprocess.run(["strip", "--strip-all", "-o", str(path), workload], check=True)
    return str(path)


@pytest.mark.root
def test_profile_names_a_stripped_programs_frames_by_module_and_address(workload, stripped):
    res = pytracekit("profile", "-F", "199", "-f", "--", stripped, "spin", "1")
    assert res.returncode == 0, res.stderr
    assert not re.search(r"\[unknown\](?!\+0x)", res.stdout)   # never a bare [unknown]
    funcs = nm_functions(workload)
    by_function: dict[tuple, int] = {}
    boxes = set()
    for line in res.stdout.splitlines():
        stack, count = line.rsplit(" ", 1)
        path = []
        for frame in stack.split(";")[1:]:
            m = re.fullmatch(r"workload\+0x([0-9a-f]+)", frame)
            if m:
                boxes.add(frame)
                name = function_at(funcs, int(m.group(1), 16))
                assert name is not None, frame   # every unnamed address is in a function
                path.append(name)
            else:
                path.append(frame)
        by_function[tuple(path)] = by_function.get(tuple(path), 0) + int(count)
    total = sum(by_function.values())
    spinning = sum(v for p, v in by_function.items() if p[-3:] == ("main", "spin_outer",
                                                                      "spin_inner"))
    assert total > 20 and spinning >= 0.8 * total, by_function
    # the program's own functions are unnamed boxes, one per address
    assert len(boxes) >= 3


@pytest.mark.root
def test_a_plt_stub_frame_is_name_at_plt(workload):
    """A uprobe on the malloc@plt stub (reached as _init+OFFSET, the only symbol
    before .plt): the leaf frame is the stub, named as objdump labels it."""
    out = subprocess.run(["objdump", "-d", workload], capture_output=True, text=True).stdout
    stub = int(re.search(r"^([0-9a-f]+) <malloc@plt>:", out, re.M).group(1), 16)
    init = int(re.search(r"^([0-9a-f]+) <_init>:", out, re.M).group(1), 16)
    res = pytracekit("stackcount", "-f", "-U", f"{workload}:_init+{stub - init:#x}", "--",
                     workload, "malloc", "7", "64")
    assert res.returncode == 0, res.stderr
    lines = [l.rsplit(" ", 1) for l in res.stdout.strip().splitlines()]
    assert sum(int(c) for s, c in lines if s.endswith(";main;alloc_known;malloc@plt")) == 7, \
        res.stdout
    assert "_init" not in res.stdout


def readelf_text_segment(path: str) -> tuple[int, int, int]:
    out = subprocess.run(["readelf", "-lW", path], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD" and "E" in f[6:-1]:
            return int(f[2], 16), int(f[5], 16), int(f[1], 16)   # vaddr, memsz, offset
    raise AssertionError("no executable LOAD")


@pytest.mark.root
def test_cprofile_pprof_has_real_mappings_and_addresses(workload, stripped, tmp_path):
    out_dir = tmp_path / "prof"
    out_dir.mkdir()
    res = pytracekit("cprofile", "--every", "0.5", "--dir", str(out_dir), "-F", "199", "--",
                     stripped, "spin", "1")
    assert res.returncode == 0, res.stderr
    files = sorted(out_dir.glob("cpu-*.pb.gz"))
    messages = [parse(f.read_bytes()) for f in files]
    messages = [m for m in messages if m.sample]
    assert messages
    vaddr, memsz, offset = readelf_text_segment(stripped)
    build_id = load_image(stripped).build_id()
    readelf_id = subprocess.run(["readelf", "-n", stripped], capture_output=True,
                                text=True).stdout
    assert f"Build ID: {build_id}" in readelf_id
    # the window with the spin in it names the program first; a window that holds only
    # the start (the launcher before its exec, ld.so) may not have it at all
    busiest = max(messages, key=lambda m: sum(x.value[0] for x in m.sample))
    assert busiest.string_table[busiest.mapping[0].filename] == stripped, \
        "the main binary comes first"
    for m in messages:
        s = m.string_table
        assert (s[m.period_type.type], s[m.period_type.unit]) == ("cpu", "nanoseconds")
        assert m.period == 1_000_000_000 // 199
        main = next((mp for mp in m.mapping if s[mp.filename] == stripped), None)
        if main is None:
            continue
        assert (main.memory_start, main.memory_limit, main.file_offset) == (
            vaddr, vaddr + memsz, offset)
        assert s[main.build_id] == build_id
        assert not main.has_functions     # stripped: its frames are unnamed
        for mapping in m.mapping:
            name = s[mapping.filename]
            if name.startswith("/"):   # every file's mapping is one readelf agrees with
                v, size, off = readelf_text_segment(name)
                assert (mapping.memory_start, mapping.memory_limit, mapping.file_offset) == (
                    v, v + size, off), name
                assert s[mapping.build_id] == load_image(name).build_id()
        ours = [loc for loc in m.location if loc.mapping_id == main.id]
        assert ours and all(vaddr <= loc.address < vaddr + memsz for loc in ours)
        names = {f.id: s[f.name] for f in m.function}
        funcs = nm_functions(workload)
        for loc in ours:   # unnamed frames are named by that same link-time address
            name = names[loc.line[0].function_id]
            if name == "_start":   # the entry point, named from the ELF header
                assert function_at(funcs, loc.address) == "_start", loc
                continue
            assert name == f"workload+{loc.address:#x}"
        assert len({s[mp.filename] for mp in m.mapping}) == len(m.mapping)


@pytest.mark.root
def test_json_frames_keep_module_and_unknown_frames_are_counted(workload, stripped):
    """JSON: an unnamed frame's module is its file, its name its address there;
    the loss line counts the unnamed frames (they are still not names)."""
    from stack_checks import parse_json
    res = pytracekit("profile", "-F", "199", "--json", "--", stripped, "spin", "1")
    assert res.returncode == 0, res.stderr
    _header, stacks, loss = parse_json(res.stdout, "profile")
    funcs = nm_functions(workload)
    ours = [f for s in stacks for f in s["frames"] if f["module"] == "workload"]
    assert ours
    for frame in ours:
        if frame["name"] == "_start":   # the entry point (ELF header), reached by CFI unwinding
            continue
        m = re.fullmatch(r"workload\+0x([0-9a-f]+)", frame["name"])
        assert m and function_at(funcs, int(m.group(1), 16)), frame
    assert loss["unknown_frames"] >= len({f["name"] for f in ours})


@pytest.mark.root
def test_python_busy_loop_shows_no_init_frame():
    """Debian's python3.11: samples in its .plt were named `_init` (a zero-size
    symbol stretched over .plt, about 1-5% of samples); they are `name@plt` now."""
    if not Path("/usr/bin/python3.11").exists():
        pytest.skip("python3.11 is not installed")
    loop = "import time\nt = time.time()\nwhile time.time() - t < 2: sum(range(100))"
    res = pytracekit("profile", "-F", "199", "-f", "--", "/usr/bin/python3.11", "-c", loop)
    assert res.returncode == 0, res.stderr
    frames = [f for line in res.stdout.splitlines() for f in line.rsplit(" ", 1)[0].split(";")]
    assert sum(int(line.rsplit(" ", 1)[1]) for line in res.stdout.splitlines()) > 100
    # a stack rooted in the not-loaded marker is the kernel's frame-pointer walk
    # (a sample in ld.so before the unwinder loaded the process): it says it may
    # not be whole, and a return address it made up can land anywhere, _init too
    whole = [f for line in res.stdout.splitlines() if NOT_LOADED.name not in line
              for f in line.rsplit(" ", 1)[0].split(";")]
    assert "_init" not in whole
    assert not any(re.fullmatch(r"\[unknown\]", f) for f in frames)

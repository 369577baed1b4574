"""pytracekit.symbolize.python.layouts against the interpreters installed here.

Two independent checks per CPython minor version:
- DWARF: gdb evaluates each offset's origin expression on the pyenv build's
  libpython (built -g) and must print the table's number; 3.13's
  _Py_DebugOffsets (static data in _PyRuntime) must agree with the table too.
- Live: the interpreter runs tests/pyframes_selfcheck.py, which walks its own
  runtime with the table (the reads BPF will make) and must find its own
  PyThreadState by pthread_self, the frames sys._getframe() shows, their code
  objects, instruction offsets, names and files. This is the only check
  possible for Debian's stripped /usr/bin/python3.11 (no DWARF).
An interpreter that is not installed is skipped with the reason.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytracekit.symbolize.python import layouts as pl
from pytracekit.symbolize.elfsyms import ElfImage, map_file

from pythons import DEBIAN_PY311, need_pyenv

HERE = Path(__file__).parent
SELFCHECK = HERE / "pyframes_selfcheck.py"
MINORS = sorted(pl.LAYOUTS)


def _gdb(binary: str, commands: list[str]) -> str:
    if not shutil.which("gdb"):
        pytest.skip("gdb is not installed (needed to read offsets from DWARF)")
    if ElfImage(map_file(binary)).section(".debug_info") is None:
        pytest.skip(f"{binary} has no DWARF (.debug_info)")
    args = ["gdb", "-batch", "-nx"]
    for c in commands:
        args += ["-ex", c]
    return subprocess.run(args + [binary], capture_output=True, text=True, timeout=120).stdout


@functools.lru_cache(maxsize=None)
def _dwarf_values(binary: str, minor: int) -> dict[str, int]:
    """Every origin expression of the layout evaluated by gdb, in one gdb run."""
    layout = pl.LAYOUTS[(3, minor)]
    cmds = [f'printf "{name}=%ld\\n", {expr}' for name, expr in layout.origins.items()]
    cmds += ['printf "CSTACK=%d\\n", (int)FRAME_OWNED_BY_CSTACK', "ptype/o PyASCIIObject"]
    if minor >= 13:
        cmds.append("p _PyRuntime.debug_offsets")
    text = _gdb(binary, cmds)
    values = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)=(-?\d+)$", text, re.M)}
    for bit in ("kind", "compact", "ascii"):
        m = re.search(rf"/\*\s+32:\s*(\d+)\s*\|\s*4 \*/\s+unsigned int {bit} : (\d+);", text)
        if m:
            values[f"bit_{bit}"], values[f"width_{bit}"] = int(m[1]), int(m[2])
    m = re.search(r"^\$\d+ = (\{cookie = .*)$", text, re.M)
    if m:
        values["debug_offsets_text"] = m[1]  # type: ignore[assignment]
    return values


@pytest.mark.parametrize("minor", [m for _, m in MINORS])
def test_offsets_match_dwarf(minor):
    _, binary = need_pyenv(minor)
    layout = pl.LAYOUTS[(3, minor)]
    got = _dwarf_values(binary, minor)
    wrong = {name: (getattr(layout, name), got.get(name, "absent in DWARF"))
             for name in layout.origins if got.get(name) != getattr(layout, name)}
    assert wrong == {}, f"3.{minor} table vs DWARF of {binary}: (table, dwarf) {wrong}"
    # Fields the table says do not exist in this version really are absent or unused.
    absent = [n for n in pl.PyLayout.__dataclass_fields__
              if n not in ("version", "origins") and getattr(layout, n) is None]
    assert all(n not in layout.origins for n in absent)


@pytest.mark.parametrize("minor", [m for _, m in MINORS])
def test_unicode_state_bits_and_frame_owner(minor):
    _, binary = need_pyenv(minor)
    got = _dwarf_values(binary, minor)
    assert (got.get("bit_kind"), got.get("width_kind")) == (pl.UNICODE_KIND_SHIFT, 3)
    assert (got.get("bit_compact"), got.get("bit_ascii")) == (pl.UNICODE_COMPACT_BIT,
                                                              pl.UNICODE_ASCII_BIT)
    if minor >= 12:
        assert got.get("CSTACK") == pl.FRAME_OWNED_BY_CSTACK
    else:
        assert "CSTACK" not in got  # 3.11 marks entry frames with is_entry instead


def test_313_debug_offsets_match_table():
    _, binary = need_pyenv(13)
    text = _dwarf_values(binary, 13).get("debug_offsets_text")
    assert text, f"gdb printed no _PyRuntime.debug_offsets for {binary}"
    assert 'cookie = "xdebugpy"' in text
    assert pl.DEBUG_OFFSETS_COOKIE == b"xdebugpy"
    version = int(re.search(r"version = (\d+)", text)[1])
    assert pl.version_from_hex(version) == (3, 13)
    assert "free_threaded = 0" in text
    layout = pl.LAYOUTS[(3, 13)]
    wrong = {}
    for name, (section, member) in pl.DEBUG_OFFSETS_313.items():
        sect = re.search(rf"\b{section} = \{{([^}}]*)\}}", text)[1]
        value = int(re.search(rf"\b{member} = (\d+)", sect)[1])
        if value != getattr(layout, name):
            wrong[name] = (getattr(layout, name), value)
    assert wrong == {}, f"(table, _Py_DebugOffsets): {wrong}"


def _selfcheck(python: str, minor: int) -> dict:
    layout = pl.LAYOUTS[(3, minor)]
    numbers = {n: getattr(layout, n) for n in pl.PyLayout.__dataclass_fields__
               if n not in ("version", "origins")}
    out = subprocess.run([python, "-I", str(SELFCHECK), json.dumps(numbers)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _check_walk(result: dict, minor: int) -> None:
    assert result["tstate_walked"] == [result["tstate_api"]], \
        "the thread state whose thread_id is pthread_self() is not PyThreadState_Get()"
    if pl.LAYOUTS[(3, minor)].tstate_native_thread_id is not None:
        assert result["native_thread_id"] == result["get_native_id"]
    # Shim frames of each C-level eval entry (3.12+) are not Python frames.
    python_frames = [(f, n) for f, n in zip(result["walked"], result["names"]) if n is not None]
    expected = result["expected"]
    # The walk ran inside frames() -> u64() (u64 read tstate's frame pointer), then
    # observe() listed sys._getframe(): those two lead the walked chain.
    assert [n["name"] for _, n in python_frames[:2]] == ["u64", "frames"]
    python_frames = python_frames[2:]
    assert [f["code"] for f, _ in python_frames] == [e["code"] for e in expected]
    # observe() moved on after the walk; its callers still sit at their call.
    assert [f["offset"] for f, _ in python_frames][1:] == [e["offset"] for e in expected][1:]
    for (_, got), want in zip(python_frames, expected):
        assert got == {k: want[k] for k in ("name", "qualname", "filename", "firstlineno")}
    names = [n["name"] for _, n in python_frames]
    assert names[:4] == ["observe", "fünf_函数", "fünf_函数", "fünf_函数"]
    if minor == 11:
        # is_entry marks the outermost frame of each _PyEval_EvalFrameDefault call.
        assert result["walked"][-1]["entry"] == 1
    if minor >= 12:
        assert result["walked"][-1]["owner"] == pl.FRAME_OWNED_BY_CSTACK


@pytest.mark.parametrize("minor", [m for _, m in MINORS])
def test_live_walk_pyenv(minor):
    python, _ = need_pyenv(minor)
    result = _selfcheck(python, minor)
    _check_walk(result["main"], minor)
    _check_walk(result["thread"], minor)
    assert result["main"]["tstate_api"] != result["thread"]["tstate_api"]


def test_live_walk_debian_python311():
    if not os.path.exists(DEBIAN_PY311):
        pytest.skip(f"{DEBIAN_PY311} is not installed")
    version = subprocess.run([DEBIAN_PY311, "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True).stdout.strip()
    assert version == "(3, 11)"
    result = _selfcheck(DEBIAN_PY311, 11)
    _check_walk(result["main"], 11)
    _check_walk(result["thread"], 11)


def test_debian_python311_runtime_size_matches_pyenv_311():
    """Stripped, but .dynsym keeps _PyRuntime's size: same struct as 3.11.7's DWARF says."""
    if not os.path.exists(DEBIAN_PY311) or not shutil.which("readelf"):
        pytest.skip(f"needs {DEBIAN_PY311} and readelf")
    _, binary = need_pyenv(11)
    syms = subprocess.run(["readelf", "-W", "--dyn-syms", DEBIAN_PY311],
                          capture_output=True, text=True).stdout
    size = re.search(r"\s(0x[0-9a-f]+|\d+) OBJECT\s+GLOBAL\s+DEFAULT\s+\d+ _PyRuntime$", syms, re.M)
    assert size, "no _PyRuntime in Debian's python3.11 .dynsym"
    dwarf = _gdb(binary, ['printf "size=%ld\\n", sizeof(_PyRuntimeState)'])
    assert int(size[1], 0) == int(re.search(r"size=(\d+)", dwarf)[1])


def test_unsupported_versions_have_no_layout():
    assert pl.layout_for(3, 7) is None and pl.layout_for(3, 14) is None
    assert [pl.layout_for(3, m).version for m in range(8, 14)] == [(3, m) for m in range(8, 14)]


def test_defines_leave_out_absent_fields():
    d311 = pl.LAYOUTS[(3, 11)].defines()
    assert d311["PY_VERSION_MINOR"] == 11 and d311["PY_TSTATE_CFRAME"] == 56
    assert "PY_TSTATE_FRAME" not in d311 and "PY_FRAME_LASTI" not in d311
    d38 = pl.LAYOUTS[(3, 8)].defines()
    assert d38["PY_TSTATE_FRAME"] == 24 and "PY_CODE_QUALNAME" not in d38


def test_u16_array_covers_every_field():
    for layout in pl.LAYOUTS.values():
        values = layout.as_u16()
        assert len(values) == len(pl.FIELDS) == 33
        assert all(0 <= v < pl.ABSENT for v, n in zip(values, pl.FIELDS) if getattr(layout, n) is not None)
        assert [n for v, n in zip(values, pl.FIELDS) if v == pl.ABSENT] == \
            [n for n in pl.FIELDS if getattr(layout, n) is None]
    # Every field the walk needs in every version exists somewhere.
    assert pl.FIELDS[0] == "runtime_interpreters_head"


def test_version_from_hex():
    assert pl.version_from_hex(0x030B02F0) == (3, 11)
    assert pl.version_from_hex(0x030D00F0) == (3, 13)


def test_module_is_pure_stdlib():
    imports = re.findall(r"^(?:from|import) (\S+)", (HERE.parent / "pytracekit" /
                                                       "symbolize/python/layouts.py").read_text(), re.M)
    assert set(imports) <= {"__future__", "dataclasses", "typing"}
    assert sys.modules["pytracekit.symbolize.python.layouts"].__file__.endswith("layouts.py")

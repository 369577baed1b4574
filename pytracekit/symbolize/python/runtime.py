"""Is a process CPython, which version, and where is its `_PyRuntime`?

From /proc/PID/maps: the file mapped at offset 0 whose name looks like
`python3.X` or `libpython3.X...so` and whose symbols define `_PyRuntime`
(Debian's statically linked python3.11 exports it from the executable;
pyenv's shared builds from libpython3.X.so.1.0). The version comes from
`Py_Version` (3.11+) in the file, else from the file name; on 3.13 the
runtime's own `_Py_DebugOffsets` must agree with our table. Design:
docs/design/python-frames.md section 3.
"""
from __future__ import annotations

import functools
import os
import re
import struct
from dataclasses import dataclass
from typing import Optional

from . import layouts as pl
from ..elfsyms import ElfImage, NotElf, map_file

SUPPORTED = "3.8-3.13"
# python3.11, libpython3.8.so.1.0, libpython3.7m.so.1.0, python3.13t (free-threaded), python3.12d
_NAME = re.compile(r"(?:^|/)(?:lib)?python(\d)\.(\d+)([a-z]*)(?:\.so[.\d]*)?$")
_WANTED = {"_PyRuntime", "Py_Version", "PyCode_Type"}


class Unsupported(Exception):
    """A CPython process whose frames we do not walk; str() is the one-line reason."""


class NoCookie(Unsupported):
    """3.13's _PyRuntime does not start with the _Py_DebugOffsets cookie."""


@dataclass(frozen=True)
class PyProcess:
    """A CPython process: where its runtime is, and the layout of its version."""
    pid: int
    path: str                 # the file that holds _PyRuntime
    version: tuple[int, int]
    runtime: int              # address of _PyRuntime in the process
    code_type: int            # address of PyCode_Type (0: unknown)
    layout: pl.PyLayout


@dataclass(frozen=True)
class _FileFacts:
    """What one interpreter file holds (symbols, first vaddr, Py_Version), read once."""
    first_vaddr: int
    symbols: dict
    py_version: Optional[int]


@functools.lru_cache(maxsize=64)
def _file_facts(path: str, _mtime_ns: int) -> Optional[_FileFacts]:
    try:
        img = ElfImage(map_file(path))
    except (OSError, NotElf, struct.error):
        return None
    syms = img.symbols(_WANTED)
    if "_PyRuntime" not in syms or not img.segments:
        return None
    ver = None
    if "Py_Version" in syms:
        raw = img.read_vaddr(syms["Py_Version"][0], 4)
        ver = struct.unpack("<I", raw)[0] if raw else None
    return _FileFacts(min(v for _, v, _ in img.segments), syms, ver)


def _candidates(pid: int, mapped: dict[str, int] | None = None
                ) -> list[tuple[str, int, re.Match]]:
    """(path, start of its offset-0 mapping, name match) of python-looking files,
    from `mapped` (path -> that start, read from the maps just now) or the maps."""
    if mapped is None:
        from ..symbols import python_files_of
        mapped = python_files_of(pid)
    return [(path, start, m) for path, start in mapped.items()
            if (m := _NAME.search(path)) is not None]


def _in_data_of(pid: int, address: int, path: str) -> bool:
    """Whether `address` is in a writable mapping of `path` now: else what was
    read there is not the file's data (ld.so maps a library's whole span first,
    its segments after; an exec replaces everything)."""
    from ..symbols import read_proc
    for line in read_proc(f"/proc/{pid}/maps").decode(errors="surrogateescape").splitlines():
        parts = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in parts[0].split("-"))
        if low <= address < high:
            return len(parts) == 6 and parts[5].strip() == path and parts[1].startswith("rw")
    return False


# struct _Py_DebugOffsets of 3.13 after cookie, version and free_threaded: its
# sections in order, each a run of uint64_t (gdb `ptype/o struct _Py_DebugOffsets`
# on pyenv's 3.13.0 libpython). Only the order matters: positions follow.
_DEBUG_SECTIONS_313 = (
    ("runtime_state", ("size", "finalizing", "interpreters_head")),
    ("interpreter_state", ("size", "id", "next", "threads_head", "gc", "imports_modules",
                           "sysdict", "builtins", "ceval_gil", "gil_runtime_state",
                           "gil_runtime_state_enabled", "gil_runtime_state_locked",
                           "gil_runtime_state_holder")),
    ("thread_state", ("size", "prev", "next", "interp", "current_frame", "thread_id",
                      "native_thread_id", "datastack_chunk", "status")),
    ("interpreter_frame", ("size", "previous", "executable", "instr_ptr", "localsplus",
                           "owner")),
    ("code_object", ("size", "filename", "name", "qualname", "linetable", "firstlineno",
                     "argcount", "localsplusnames", "localspluskinds", "co_code_adaptive")),
    ("pyobject", ("size", "ob_type")),
    ("type_object", ("size", "tp_name", "tp_repr", "tp_flags")),
    ("tuple_object", ("size", "ob_item", "ob_size")),
    ("list_object", ("size", "ob_item", "ob_size")),
    ("dict_object", ("size", "ma_keys", "ma_values")),
    ("float_object", ("size", "ob_fval")),
    ("long_object", ("size", "lv_tag", "ob_digit")),
    ("bytes_object", ("size", "ob_size", "ob_sval")),
    ("unicode_object", ("size", "state", "length", "asciiobject_size")),
)
_DEBUG_HEAD = 24   # cookie[8], version, free_threaded


def _debug_positions() -> dict[tuple[str, str], int]:
    out, pos = {}, _DEBUG_HEAD
    for section, members in _DEBUG_SECTIONS_313:
        for member in members:
            out[(section, member)] = pos
            pos += 8
    return out


DEBUG_POSITIONS_313 = _debug_positions()


def _check_debug_offsets(pid: int, runtime: int, layout: pl.PyLayout) -> None:
    """3.13: _Py_DebugOffsets at _PyRuntime+0 must say what our table says;
    a build that disagrees is not walked with the table."""
    size = max(DEBUG_POSITIONS_313.values()) + 8
    try:
        with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            mem.seek(runtime)
            raw = mem.read(size)
    except OSError as exc:
        raise Unsupported(f"cannot read its memory ({exc.strerror})") from None
    cookie, version, free_threaded = struct.unpack_from("<8sQQ", raw)
    if cookie != pl.DEBUG_OFFSETS_COOKIE:
        raise NoCookie("no _Py_DebugOffsets cookie at _PyRuntime (an unusual build)")
    if pl.version_from_hex(version) != layout.version:
        raise Unsupported(f"_Py_DebugOffsets says version {version:#x}")
    if free_threaded:
        raise Unsupported("free-threaded build")
    for field, where in pl.DEBUG_OFFSETS_313.items():
        theirs = struct.unpack_from("<Q", raw, DEBUG_POSITIONS_313[where])[0]
        if theirs != getattr(layout, field):
            raise Unsupported(f"python {layout.version[0]}.{layout.version[1]} "
                              f"(its {where[0]}.{where[1]} is {theirs}, not "
                              f"{getattr(layout, field)}: a different build)")


def find(pid: int, mapped: dict[str, int] | None = None) -> Optional[PyProcess]:
    """The process's CPython runtime, None when it maps no interpreter (yet:
    ld.so may not have mapped libpython). Raises Unsupported for a CPython we
    cannot walk, with the reason; OSError when the process is gone. `mapped`:
    the offset-0 starts of its python-named files, from a snapshot of its maps
    still current (symbols.ProcessMaps.python_files); else the maps are read."""
    for path, start, m in _candidates(pid, mapped):
        version = (int(m[1]), int(m[2]))
        flags = m[3]
        try:
            facts = _file_facts(path, os.stat(path).st_mtime_ns)
        except OSError:
            facts = None   # deleted/replaced file: try the next
        if facts is None:
            if version < (3, 8):   # 3.6 has no _PyRuntime at all
                raise Unsupported(f"python {version[0]}.{version[1]}")
            continue
        if facts.py_version is not None:
            version = pl.version_from_hex(facts.py_version)
        if "t" in flags or "d" in flags:
            kind = "free-threaded" if "t" in flags else "debug"
            raise Unsupported(f"python {version[0]}.{version[1]} ({kind} build)")
        layout = pl.layout_for(*version)
        if layout is None:
            raise Unsupported(f"python {version[0]}.{version[1]}")
        bias = start - (facts.first_vaddr & ~0xFFF)
        runtime = bias + facts.symbols["_PyRuntime"][0]
        if version >= (3, 13):
            try:
                _check_debug_offsets(pid, runtime, layout)
            except NoCookie:
                if not _in_data_of(pid, runtime, path):
                    return None   # ld.so is still mapping it, or the process exec'd: again later
                raise
        code_type = facts.symbols.get("PyCode_Type", (0, 0))[0]
        return PyProcess(pid, path, version, runtime, bias + code_type if code_type else 0,
                         layout)
    return None


def unsupported_line(pid: int, reason: str) -> str:
    return f"{reason} process {pid}: Python frames not supported ({SUPPORTED}); native frames only"

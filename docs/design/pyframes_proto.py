"""PROTOTYPE (not product code): print every thread's Python stack of a live
CPython 3.8-3.13 process from /proc/PID/mem, using pytracekit.pyframes_layouts.

It makes the reads the BPF walker will make (runtime -> interpreter ->
thread states -> frames -> code objects) and the user-space half (strings,
line tables). Evidence for docs/design/python-frames.md.

    .venv/bin/python docs/design/pyframes_proto.py PID
"""
from __future__ import annotations

import re
import struct
import sys

sys.path.insert(0, __file__.rsplit("/docs/", 1)[0])
from pytracekit import pyframes_layouts as pl  # noqa: E402
from pytracekit.elfsyms import _SYM, SHT_DYNSYM, SHT_SYMTAB, ElfImage, map_file  # noqa: E402


class Mem:
    def __init__(self, pid: int) -> None:
        self.f = open(f"/proc/{pid}/mem", "rb", buffering=0)

    def read(self, addr: int, n: int) -> bytes:
        self.f.seek(addr)
        return self.f.read(n)

    def u64(self, addr: int) -> int:
        return struct.unpack("<Q", self.read(addr, 8))[0]

    def i32(self, addr: int) -> int:
        return struct.unpack("<i", self.read(addr, 4))[0]

    def u8(self, addr: int) -> int:
        return self.read(addr, 1)[0]


def object_symbols(path: str, wanted: set[str]) -> dict[str, int]:
    img = ElfImage(map_file(path))
    out = {}
    for sec in img.sections:
        if sec.type not in (SHT_SYMTAB, SHT_DYNSYM):
            continue
        strtab = img.sections[sec.link]
        strs = img.data[strtab.offset:strtab.offset + strtab.size]
        body = img.data[sec.offset:sec.offset + sec.size]
        for st_name, _info, _o, shndx, value, _size in _SYM.iter_unpack(body):
            name = strs[st_name:strs.find(b"\0", st_name)].decode(errors="replace")
            if name in wanted and shndx:
                out[name] = value
    return out, min(v for _, v, _ in img.segments)


def find_runtime(pid: int) -> tuple[int, int | None, str]:
    """(address of _PyRuntime, Py_Version address or None, path) from the maps."""
    bases: dict[str, int] = {}
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split()
        if len(parts) >= 6 and int(parts[2], 16) == 0 and "python" in parts[5]:
            bases.setdefault(parts[5], int(parts[0].split("-")[0], 16))
    for path, start in bases.items():
        syms, first_vaddr = object_symbols(path, {"_PyRuntime", "Py_Version"})
        if "_PyRuntime" in syms:
            bias = start - (first_vaddr & ~0xFFF)
            ver = syms.get("Py_Version")
            return bias + syms["_PyRuntime"], (bias + ver) if ver else None, path
    raise SystemExit(f"no _PyRuntime in the python mappings of {pid}")


def read_str(mem: Mem, L: pl.PyLayout, obj: int) -> str:
    state = struct.unpack("<I", mem.read(obj + L.unicode_state, 4))[0]
    kind = (state >> pl.UNICODE_KIND_SHIFT) & pl.UNICODE_KIND_MASK
    compact, ascii_ = (state >> pl.UNICODE_COMPACT_BIT) & 1, (state >> pl.UNICODE_ASCII_BIT) & 1
    length = mem.u64(obj + L.unicode_length)
    if not compact or kind not in (1, 2, 4) or length > 4096:
        return "?"
    if ascii_:
        return mem.read(obj + L.unicode_ascii_data, length).decode("ascii", "replace")
    raw = mem.read(obj + L.unicode_compact_data, length * kind)
    return raw.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind], "replace")


def read_bytes(mem: Mem, L: pl.PyLayout, obj: int) -> bytes:
    return mem.read(obj + L.bytes_data, mem.u64(obj + L.bytes_size))


# ---- line tables (user space): offset is in bytes from the start of the bytecode
def line_lnotab(table: bytes, first: int, offset: int) -> int:  # 3.8, 3.9
    line, addr = first, 0
    for i in range(0, len(table) - 1, 2):
        addr += table[i]
        if addr > offset:
            break
        line += struct.unpack("b", table[i + 1:i + 2])[0]
    return line


def line_310(table: bytes, first: int, offset: int) -> int | None:  # 3.10
    line, start = first, 0
    for i in range(0, len(table) - 1, 2):
        end = start + table[i]
        delta = struct.unpack("b", table[i + 1:i + 2])[0]
        if delta != -128:
            line += delta
        if start <= offset < end:
            return None if delta == -128 else line
        start = end
    return None


def line_311(table: bytes, first: int, offset: int) -> int | None:  # 3.11+ locations
    unit = offset // pl.CODEUNIT_SIZE
    pos, addr, line = 0, 0, first

    def varint() -> int:
        nonlocal pos
        b = table[pos]; pos += 1
        val, shift = b & 63, 6
        while b & 64:
            b = table[pos]; pos += 1
            val |= (b & 63) << shift
            shift += 6
        return val

    def svarint() -> int:
        v = varint()
        return -(v >> 1) if v & 1 else v >> 1

    while pos < len(table):
        head = table[pos]; pos += 1
        code, length = (head >> 3) & 15, (head & 7) + 1
        this: int | None = line
        if code == 15:
            this = None
        elif code == 14:
            line += svarint(); this = line
            varint(); varint(); varint()
        elif code == 13:
            line += svarint(); this = line
        elif code >= 10:
            line += code - 10; this = line
            pos += 2
        else:
            pos += 1
        if addr <= unit < addr + length:
            return this
        addr += length
    return None


def walk(pid: int, max_frames: int = 128) -> None:
    mem = Mem(pid)
    runtime, py_version_addr, path = find_runtime(pid)
    if py_version_addr:
        version = pl.version_from_hex(mem.u64(py_version_addr))
    else:
        m = re.search(r"python3\.(\d+)", path)
        version = (3, int(m[1]))
    L = pl.layout_for(*version)
    if L is None:
        raise SystemExit(f"CPython {version} is not supported")
    print(f"pid {pid}: {path}  _PyRuntime={runtime:#x}  CPython {version[0]}.{version[1]}")
    if version >= (3, 13):
        head = mem.read(runtime, 16)
        print(f"  _Py_DebugOffsets cookie={head[:8]!r} version={struct.unpack('<Q', head[8:])[0]:#x}")
    line_of = line_lnotab if version < (3, 10) else line_310 if version == (3, 10) else line_311
    interp = mem.u64(runtime + L.runtime_interpreters_head)
    while interp:
        ts = mem.u64(interp + L.interp_threads_head)
        while ts:
            tid = mem.u64(ts + L.tstate_thread_id)
            native = mem.u64(ts + L.tstate_native_thread_id) if L.tstate_native_thread_id is not None else None
            print(f"  thread_id={tid:#x} native_thread_id={native} tstate={ts:#x}")
            if L.tstate_cframe is not None:
                frame = mem.u64(mem.u64(ts + L.tstate_cframe) + L.cframe_current_frame)
            else:
                frame = mem.u64(ts + L.tstate_frame)
            n = 0
            while frame and n < max_frames:
                n += 1
                owner = mem.u8(frame + L.frame_owner) if L.frame_owner is not None else 0
                code = mem.u64(frame + L.frame_code)
                if owner == pl.FRAME_OWNED_BY_CSTACK:
                    print("    -- C stack boundary (shim frame: one _PyEval_EvalFrameDefault entry)")
                else:
                    if L.frame_lasti is not None:
                        lasti = mem.i32(frame + L.frame_lasti)
                        offset = lasti * pl.CODEUNIT_SIZE if version == (3, 10) else lasti
                    else:
                        offset = mem.u64(frame + L.frame_instr_ptr) - (code + L.code_adaptive)
                    name = read_str(mem, L, mem.u64(code + (L.code_qualname or L.code_name)))
                    fname = read_str(mem, L, mem.u64(code + L.code_filename))
                    table = read_bytes(mem, L, mem.u64(code + L.code_linetable))
                    line = line_of(table, mem.i32(code + L.code_firstlineno), max(offset, 0))
                    entry = " [entry]" if L.frame_is_entry is not None and mem.u8(frame + L.frame_is_entry) else ""
                    print(f"    {name} ({fname}:{line})  code={code:#x} offset={offset}{entry}")
                frame = mem.u64(frame + L.frame_previous)
            ts = mem.u64(ts + L.tstate_next)
        interp = mem.u64(interp + L.interp_next)


if __name__ == "__main__":
    walk(int(sys.argv[1]))

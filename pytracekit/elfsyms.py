"""Function symbols of one ELF file, from every place a distribution puts them.

Sources, merged: the file's own .symtab and .dynsym; the MiniDebugInfo
symbol table (.gnu_debugdata, an xz-compressed ELF, as Fedora ships); a
separate debug file found by build id (/usr/lib/debug/.build-id/ab/cdef.debug)
or by .gnu_debuglink (next to the file, in .debug/, under /usr/lib/debug).
BCC 0.26's symbolizer reads symtab, dynsym, debuglink and build id but not
.gnu_debugdata, and cannot resolve a process that has exited; this module
covers both. 64-bit little-endian ELF only (x86_64, aarch64).
"""
from __future__ import annotations

import bisect
import lzma
import mmap
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

DEBUG_ROOT = Path(os.environ.get("PYTRACEKIT_DEBUG_ROOT", "/usr/lib/debug"))

_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
SHT_SYMTAB, SHT_NOTE, SHT_DYNSYM, SHT_NOBITS = 2, 7, 11, 8
PT_LOAD = 1
STT_FUNC, STT_GNU_IFUNC = 2, 10
NT_GNU_BUILD_ID = 3


class NotElf(ValueError):
    pass


def map_file(path: str | Path) -> "mmap.mmap | bytes":
    """The file's bytes, mapped: big binaries (browsers) are only read where
    we look. Raises OSError like read_bytes()."""
    with open(path, "rb") as f:
        try:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:   # empty file
            return b""


@dataclass
class Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int


class ElfImage:
    """A parsed ELF: sections, loadable segments, raw bytes."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise NotElf("not a 64-bit little-endian ELF")
        self.data = data
        phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
        self.segments = []   # (file offset, vaddr, filesz) of PT_LOAD
        for i in range(phnum):
            p_type, _fl, off, vaddr, _pa, filesz, _memsz, _al = _PHDR.unpack_from(
                data, phoff + i * phentsize)
            if p_type == PT_LOAD:
                self.segments.append((off, vaddr, filesz))
        raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)] \
            if shoff and shoff + shnum * shentsize <= len(data) else []
        names_off = raw[shstrndx][4] if raw and shstrndx < len(raw) else 0
        self.sections = [Section(self._cstr(names_off + r[0]) if names_off else "", r[1], r[3],
                                 r[4], r[5], r[6]) for r in raw]

    def _cstr(self, offset: int) -> str:
        end = self.data.find(b"\0", offset)
        return self.data[offset:end].decode(errors="replace")

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name and s.type != SHT_NOBITS), None)

    def section_bytes(self, sec: Section) -> bytes:
        return self.data[sec.offset:sec.offset + sec.size]

    def functions(self) -> list[tuple[int, int, str]]:
        """(address, size, name) of every defined function in .symtab and .dynsym."""
        out = []
        for sec in self.sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM) or sec.link >= len(self.sections):
                continue
            strtab = self.sections[sec.link]
            strs = self.data[strtab.offset:strtab.offset + strtab.size]
            body = self.data[sec.offset:sec.offset + sec.size]
            for st_name, info, _other, shndx, value, size in _SYM.iter_unpack(
                    body[:len(body) - len(body) % _SYM.size]):
                if (info & 0xF) not in (STT_FUNC, STT_GNU_IFUNC) or shndx == 0 or not value:
                    continue
                end = strs.find(b"\0", st_name)
                out.append((value, size, strs[st_name:end].decode(errors="replace")))
        return out

    def symbols(self, wanted: set[str]) -> dict[str, tuple[int, int]]:
        """name -> (address, size) of the wanted defined symbols of any type
        (data objects such as CPython's _PyRuntime too), .symtab and .dynsym."""
        out: dict[str, tuple[int, int]] = {}
        for sec in self.sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM) or sec.link >= len(self.sections):
                continue
            strtab = self.sections[sec.link]
            strs = self.data[strtab.offset:strtab.offset + strtab.size]
            body = self.data[sec.offset:sec.offset + sec.size]
            for st_name, _info, _other, shndx, value, size in _SYM.iter_unpack(
                    body[:len(body) - len(body) % _SYM.size]):
                if shndx == 0 or not value:
                    continue
                name = strs[st_name:strs.find(b"\0", st_name)].decode(errors="replace")
                if name in wanted:
                    out[name] = (value, size)
        return out

    def read_vaddr(self, vaddr: int, size: int) -> bytes | None:
        """`size` bytes stored in the file at a link-time address (initialised data)."""
        for off, start, filesz in self.segments:
            if start <= vaddr and vaddr + size <= start + filesz:
                return bytes(self.data[off + vaddr - start:off + vaddr - start + size])
        return None

    def build_id(self) -> str:
        for sec in self.sections:
            if sec.type != SHT_NOTE:
                continue
            note = self.section_bytes(sec)
            pos = 0
            while pos + 12 <= len(note):
                namesz, descsz, ntype = struct.unpack_from("<III", note, pos)
                name_end = pos + 12 + ((namesz + 3) & ~3)
                if ntype == NT_GNU_BUILD_ID and note[pos + 12:pos + 15] == b"GNU":
                    return note[name_end:name_end + descsz].hex()
                pos = name_end + ((descsz + 3) & ~3)
        return ""

    def debuglink(self) -> str:
        sec = self.section(".gnu_debuglink")
        if sec is None:
            return ""
        raw = self.section_bytes(sec)
        return raw[:raw.find(b"\0")].decode(errors="replace")

    def minidebuginfo(self) -> "ElfImage | None":
        sec = self.section(".gnu_debugdata")
        if sec is None:
            return None
        try:
            return ElfImage(lzma.decompress(self.section_bytes(sec)))
        except (lzma.LZMAError, NotElf, struct.error):
            return None

    def vaddr_of_offset(self, file_offset: int) -> int | None:
        """The link-time address of a file offset (what symbol values use)."""
        for off, vaddr, filesz in self.segments:
            if off <= file_offset < off + filesz:
                return file_offset - off + vaddr
        return None


def debug_file_candidates(path: str, build_id: str, debuglink: str) -> list[Path]:
    """Where gdb, perf and BCC look for a separate debug file, in their order."""
    found = []
    if len(build_id) > 2:
        found.append(DEBUG_ROOT / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug")
    if debuglink:
        d = Path(path).parent
        found += [d / debuglink, d / ".debug" / debuglink,
                  DEBUG_ROOT / str(d).lstrip("/") / debuglink]
    return found


@dataclass
class ElfSymbols:
    """Sorted function ranges of one file, and how its file offsets map to addresses."""

    path: str
    image: ElfImage | None
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)   # which tables contributed
    cfi: object = None        # unwind.CallFrameInfo, loaded on first use (False: none)

    @classmethod
    def load(cls, path: str, data: bytes | None = None) -> "ElfSymbols":
        try:
            image = ElfImage(data if data is not None else map_file(path))
        except (OSError, NotElf, struct.error, IndexError):
            return cls(path, None)
        table: dict[int, tuple[int, str]] = {}
        sources = []

        def merge(img: ElfImage, source: str) -> None:
            funcs = img.functions()
            if funcs:
                sources.append(source)
            for addr, size, name in funcs:
                prev = table.get(addr)
                if prev is None or (not prev[0] and size):
                    table[addr] = (size, name)

        merge(image, "symtab")
        mini = image.minidebuginfo()
        if mini is not None:
            merge(mini, "gnu_debugdata")
        build_id = image.build_id()
        for candidate in debug_file_candidates(path, build_id, image.debuglink()):
            try:
                debug = ElfImage(map_file(candidate))
            except (OSError, NotElf, struct.error, IndexError):
                continue
            if build_id and debug.build_id() and debug.build_id() != build_id:
                continue   # a stale debug file for another build
            merge(debug, f"debug file {candidate}")
            break
        syms = cls(path, image, sources=sources)
        ordered = sorted(table.items())
        for i, (addr, (size, name)) in enumerate(ordered):
            nxt = ordered[i + 1][0] if i + 1 < len(ordered) else addr + 4096
            syms.starts.append(addr)
            syms.ends.append(addr + size if size else nxt)
            syms.names.append(name)
        return syms

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(function name, offset into it) for a link-time address."""
        i = bisect.bisect_right(self.starts, vaddr) - 1
        # An address can sit past a small symbol yet inside an earlier big one.
        for j in range(i, max(i - 4, -1), -1):
            if self.starts[j] <= vaddr < self.ends[j]:
                return self.names[j], vaddr - self.starts[j]
        return None

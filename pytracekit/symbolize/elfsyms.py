"""The one ELF reader, and the function symbols of one file from every place
a distribution puts them.

Sources, merged: the file's own .symtab and .dynsym; the MiniDebugInfo
symbol table (.gnu_debugdata, an xz-compressed ELF, as Fedora ships); a
separate debug file found by build id (/usr/lib/debug/.build-id/ab/cdef.debug)
or by .gnu_debuglink (next to the file, in .debug/, under /usr/lib/debug);
PLT stubs, named `func@plt` from their GOT slot's relocation (as objdump
labels them). BCC 0.26's symbolizer reads symtab, dynsym, debuglink and build
id but not .gnu_debugdata nor PLT stubs, and cannot resolve a process that
has exited; this module covers those. Files are mapped and their descriptor
closed at once (no fd per binary held). 64-bit little-endian ELF only.
"""
from __future__ import annotations

import bisect
import ctypes
import os
import struct
import weakref
from dataclasses import dataclass, field
from pathlib import Path

DEBUG_ROOT = Path(os.environ.get("PYTRACEKIT_DEBUG_ROOT", "/usr/lib/debug"))

_SHDR = struct.Struct("<IIQQQQIIQQ")
_PHDR = struct.Struct("<IIQQQQQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
SHT_SYMTAB, SHT_RELA, SHT_NOTE, SHT_NOBITS, SHT_DYNSYM = 2, 4, 7, 8, 11
PT_LOAD, PT_NOTE = 1, 4
PF_X = 1
STT_OBJECT, STT_FUNC, STT_TLS, STT_GNU_IFUNC = 1, 2, 6, 10
NT_GNU_BUILD_ID = 3
EM_X86_64 = 62
R_X86_64_GLOB_DAT, R_X86_64_JUMP_SLOT, R_X86_64_IRELATIVE = 6, 7, 37
PLT_SECTIONS = (".plt", ".plt.sec", ".plt.got")


class NotElf(ValueError):
    pass


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_PROT_READ, _MAP_PRIVATE = 1, 2
_MAP_FAILED = ctypes.c_void_p(-1).value


def map_file(path: str | Path) -> memoryview:
    """The file's bytes, mapped read-only: big binaries (browsers) are only read
    where we look, and the descriptor is closed before returning (Python's
    mmap keeps a dup of it: one fd per binary held for the whole run). The
    mapping goes when the last view of it does. Raises OSError like open()."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            return memoryview(b"")
        addr = _libc.mmap(None, size, _PROT_READ, _MAP_PRIVATE, fd, 0)
        if addr is None or addr == _MAP_FAILED:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), str(path))
    finally:
        os.close(fd)
    region = (ctypes.c_ubyte * size).from_address(addr)
    weakref.finalize(region, _libc.munmap, addr, size)
    return memoryview(region).cast("B")


class MappedBytes:
    """A mapped file read as Python's mmap reads: an index is an int, a slice
    is bytes (a copy), find() searches; `view` is the buffer for struct."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, index):
        part = self.view[index]
        return bytes(part) if isinstance(index, slice) else part

    def find(self, sub: bytes, start: int = 0, end: int | None = None) -> int:
        end = len(self.view) if end is None else min(end, len(self.view))
        pos, step = start, 1 << 16
        while pos < end:
            chunk = bytes(self.view[pos:min(pos + step + len(sub) - 1, end)])
            found = chunk.find(sub)
            if found >= 0:
                return pos + found
            pos += step
        return -1


@dataclass
class Section:
    """One section header (its name read from .shstrtab)."""
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int
    entsize: int = 0


@dataclass(frozen=True)
class Segment:
    """One program header."""
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int


class ElfImage:
    """A parsed ELF: program headers, sections, raw bytes (a memoryview)."""

    def __init__(self, data: "bytes | memoryview") -> None:
        if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise NotElf("not a 64-bit little-endian ELF")
        # bytes as given; a mapping (map_file) read like bytes, mapped pages only
        self.data = MappedBytes(data) if isinstance(data, memoryview) else data
        self.machine, = struct.unpack_from("<H", data, 0x12)
        self.entry, phoff, shoff = struct.unpack_from("<QQQ", data, 0x18)
        phentsize, phnum, shentsize, shnum, shstrndx = struct.unpack_from("<HHHHH", data, 0x36)
        # False when a header table points past the end (a truncated file)
        self.intact = phoff + phnum * phentsize <= len(data) and \
            shoff + shnum * shentsize <= len(data)
        self.program_headers = [Segment(*(v for j, v in enumerate(_PHDR.unpack_from(
            data, phoff + i * phentsize)) if j not in (4, 7))) for i in range(phnum)] \
            if phoff and phoff + phnum * phentsize <= len(data) else []
        self.segments = [(p.offset, p.vaddr, p.filesz) for p in self.program_headers
                         if p.type == PT_LOAD]   # (file offset, vaddr, filesz) of PT_LOAD
        raw = [_SHDR.unpack_from(data, shoff + i * shentsize) for i in range(shnum)] \
            if shoff and shoff + shnum * shentsize <= len(data) else []
        names_off = raw[shstrndx][4] if raw and shstrndx < len(raw) else 0
        self.sections = [Section(self._cstr(names_off + r[0]) if names_off else "", r[1], r[3],
                                 r[4], r[5], r[6], r[9]) for r in raw]

    def _cstr(self, offset: int) -> str:
        end = self.data.find(b"\0", offset)
        return self.data[offset:end if end >= 0 else len(self.data)].decode(errors="replace")

    def section(self, name: str) -> Section | None:
        return next((s for s in self.sections if s.name == name and s.type != SHT_NOBITS), None)

    def section_bytes(self, sec: Section) -> bytes:
        return bytes(self.data[sec.offset:sec.offset + sec.size])

    def _symbols(self, kinds: tuple[int, ...]):
        """(value, size, name, section index) of defined symbols of these types,
        from .symtab and .dynsym."""
        for sec in self.sections:
            if sec.type not in (SHT_SYMTAB, SHT_DYNSYM) or sec.link >= len(self.sections):
                continue
            strs = self.section_bytes(self.sections[sec.link])
            body = self.section_bytes(sec)
            for st_name, info, _other, shndx, value, size in _SYM.iter_unpack(
                    body[:len(body) - len(body) % _SYM.size]):
                if (info & 0xF) not in kinds or shndx == 0 or not value:
                    continue
                end = strs.find(b"\0", st_name)
                yield value, size, strs[st_name:end].decode(errors="replace"), shndx

    def functions(self) -> list[tuple[int, int, str]]:
        """(address, size, name) of every defined function in .symtab and .dynsym."""
        return [(v, s, n) for v, s, n, _ in self._symbols((STT_FUNC, STT_GNU_IFUNC))]

    def plain_functions(self) -> list[tuple[int, int, str]]:
        """As functions(), less IFUNC resolvers (their symbol is not the code called)."""
        return [(v, s, n) for v, s, n, _ in self._symbols((STT_FUNC,))]

    def functions_bounded(self) -> list[tuple[int, int, str, int]]:
        """As functions(), plus where the symbol's section ends (a zero-size
        symbol such as _init may not be stretched past it)."""
        out = []
        for value, size, name, shndx in self._symbols((STT_FUNC, STT_GNU_IFUNC)):
            sec = self.sections[shndx] if shndx < len(self.sections) else None
            end = sec.addr + sec.size if sec is not None and sec.addr <= value else 0
            out.append((value, size, name, end))
        return out

    def objects(self) -> list[tuple[int, int, str]]:
        """(address, size, name) of data symbols (STT_OBJECT, STT_TLS), sorted, unique."""
        return sorted({(v, s, n) for v, s, n, _ in self._symbols((STT_OBJECT, STT_TLS))})

    def _dynamic_names(self, symtab_index: int) -> list[str]:
        sec = self.sections[symtab_index]
        strs = self.section_bytes(self.sections[sec.link])
        body = self.section_bytes(sec)
        names = []
        for st_name, *_ in _SYM.iter_unpack(body[:len(body) - len(body) % _SYM.size]):
            names.append(strs[st_name:strs.find(b"\0", st_name)].decode(errors="replace"))
        return names

    def got_names(self) -> dict[int, str]:
        """GOT slot address -> the name objdump gives its PLT stub (without @plt),
        from JUMP_SLOT / GLOB_DAT / IRELATIVE relocations (x86_64)."""
        slots: dict[int, str] = {}
        names_of: dict[int, list[str]] = {}
        for sec in self.sections:
            if sec.type != SHT_RELA or sec.link >= len(self.sections) or \
                    self.sections[sec.link].type not in (SHT_DYNSYM, SHT_SYMTAB):
                continue
            if sec.link not in names_of:
                names_of[sec.link] = self._dynamic_names(sec.link)
            names = names_of[sec.link]
            body = self.section_bytes(sec)
            for r_offset, r_info, addend in _RELA.iter_unpack(
                    body[:len(body) - len(body) % _RELA.size]):
                kind, index = r_info & 0xFFFFFFFF, r_info >> 32
                if kind in (R_X86_64_JUMP_SLOT, R_X86_64_GLOB_DAT) and 0 < index < len(names):
                    slots.setdefault(r_offset, names[index])
                elif kind == R_X86_64_IRELATIVE:
                    slots.setdefault(r_offset, f"*ABS*+{addend:#x}")
        return slots

    def plt_stubs(self) -> list[tuple[int, int, str]]:
        """(address, size, `name@plt`) of each PLT stub in .plt, .plt.sec and
        .plt.got: its `jmp *disp32(%rip)` (after an optional endbr64 and bnd
        prefix) reads a GOT slot, whose relocation names the function."""
        if self.machine != EM_X86_64:
            return []
        slots = None
        out = []
        for sec in self.sections:
            if sec.name not in PLT_SECTIONS or sec.type == SHT_NOBITS or not sec.size:
                continue
            if slots is None:
                slots = self.got_names()
            body = self.section_bytes(sec)
            step = sec.entsize if sec.entsize in (8, 16) else 16
            for at in range(0, len(body) - step + 1, step):
                stub = body[at:at + step]
                pos = 4 if stub[:4] == b"\xf3\x0f\x1e\xfa" else 0      # endbr64
                pos += 1 if stub[pos:pos + 1] == b"\xf2" else 0         # bnd
                if stub[pos:pos + 2] != b"\xff\x25" or pos + 6 > len(stub):
                    continue
                disp, = struct.unpack_from("<i", stub, pos + 2)
                name = slots.get(sec.addr + at + pos + 6 + disp)
                if name:
                    out.append((sec.addr + at, step, f"{name}@plt"))
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
        """The GNU build id (hex), from the note sections, else from PT_NOTE
        segments (a file without section headers); found once (the unwinder
        asks for every mapping of every new process)."""
        found = self.__dict__.get("_build_id")
        if found is None:
            found = self._build_id = self._find_build_id()
        return found

    def _find_build_id(self) -> str:
        for sec in self.sections:
            if sec.type == SHT_NOTE:
                found = _build_id_in_notes(self.section_bytes(sec))
                if found:
                    return found
        for ph in self.program_headers:
            if ph.type == PT_NOTE:
                found = _build_id_in_notes(bytes(self.data[ph.offset:ph.offset + ph.filesz]))
                if found:
                    return found
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
        import lzma   # here: MiniDebugInfo only (~1-3 ms of a start-up otherwise)
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

    def offset_of_vaddr(self, vaddr: int) -> int | None:
        """Where a link-time address is in the file (uprobe offsets)."""
        for off, start, filesz in self.segments:
            if start <= vaddr < start + filesz:
                return vaddr - start + off
        return None

    def text_segment(self) -> Segment | None:
        """The executable PT_LOAD (the first, if several): a module's pprof mapping."""
        return next((p for p in self.program_headers if p.type == PT_LOAD and p.flags & PF_X),
                    None)


def _build_id_in_notes(notes: bytes) -> str:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        name_end = pos + 12 + ((namesz + 3) & ~3)
        if ntype == NT_GNU_BUILD_ID and notes[pos + 12:pos + 15] == b"GNU":
            return notes[name_end:name_end + descsz].hex()
        pos = name_end + ((descsz + 3) & ~3)
    return ""


def _entry_size(image: ElfImage) -> int:
    """How long a stripped program's entry code (_start) is: glibc's ends with
    `hlt` after calling __libc_start_main; else just its first byte."""
    offset = image.offset_of_vaddr(image.entry)
    code = bytes(image.data[offset:offset + 128]) if offset is not None else b""
    hlt = code.find(b"\xf4")
    return hlt + 1 if hlt > 0 else 1


def load_image(path: str | Path) -> ElfImage | None:
    """The file's ElfImage, or None if it is unreadable or not an ELF we read."""
    try:
        return ElfImage(map_file(path))
    except (OSError, NotElf, struct.error, IndexError):
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
    """Sorted function ranges of one file, and how its file offsets map to addresses.

    The ranges are built on first use: the unwinder needs only the image (build
    id, CFI, segments) of every module a process maps, most of which no sample
    is ever named in."""

    path: str
    image: ElfImage | None
    cfi: object = None        # unwind.CallFrameInfo, loaded on first use (False: none)
    info: object = None       # model.ModuleInfo, made on first use (symbols.module_info)
    origin: str = ""          # the path it was read from (debug files are found beside it)
    _ranges: tuple | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str, data: "bytes | memoryview | None" = None) -> "ElfSymbols":
        try:
            image = ElfImage(data if data is not None else map_file(path))
        except (OSError, NotElf, struct.error, IndexError):
            return cls(path, None, _ranges=([], [], [], []))
        return cls(path, image, origin=path)

    @property
    def loaded(self) -> bool:
        return self._ranges is not None

    @property
    def starts(self) -> list[int]:
        return self._table()[0]

    @property
    def ends(self) -> list[int]:
        return self._table()[1]

    @property
    def names(self) -> list[str]:
        return self._table()[2]

    @property
    def sources(self) -> list[str]:
        """Which tables contributed (symtab, gnu_debugdata, debug file PATH, plt)."""
        return self._table()[3]

    def _table(self) -> tuple:
        if self._ranges is None:
            from .rangecache import cached_function_ranges
            path = self.origin or self.path
            self._ranges = cached_function_ranges(
                path, self.image, _function_ranges,
                lambda build_id: debug_file_candidates(path, build_id, self.image.debuglink()))
        return self._ranges

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        """(function name, offset into it) for a link-time address."""
        starts, ends, names, _ = self._table()
        i = bisect.bisect_right(starts, vaddr) - 1
        # An address can sit past a small symbol yet inside an earlier big one.
        for j in range(i, max(i - 4, -1), -1):
            if starts[j] <= vaddr < ends[j]:
                return names[j], vaddr - starts[j]
        return None


def _function_ranges(path: str, image: ElfImage) -> tuple:
    """(starts, ends, names, sources) of every function of the file: its symtab,
    .gnu_debugdata, its debug file (by build id / debuglink) and PLT stubs."""
    table: dict[int, tuple[int, str, int]] = {}   # addr -> (size, name, section end)
    sources: list[str] = []

    def merge(img: ElfImage, source: str) -> None:
        funcs = img.functions_bounded()
        if funcs:
            sources.append(source)
        for addr, size, name, limit in funcs:
            prev = table.get(addr)
            if prev is None or (not prev[0] and size):
                table[addr] = (size, name, limit)

    merge(image, "symtab")
    mini = image.minidebuginfo()
    if mini is not None:
        merge(mini, "gnu_debugdata")
    build_id = image.build_id()
    for candidate in debug_file_candidates(path, build_id, image.debuglink()):
        debug = load_image(candidate)
        if debug is None or (build_id and debug.build_id() and
                             debug.build_id() != build_id):
            continue   # missing, or a stale debug file for another build
        merge(debug, f"debug file {candidate}")
        break
    stubs = image.plt_stubs()
    if stubs:
        sources.append("plt")
    for addr, size, name in stubs:
        table.setdefault(addr, (size, name, addr + size))
    if image.entry and image.text_segment() is not None and \
            not any(a <= image.entry < a + s for a, (s, _n, _l) in table.items() if s):
        table.setdefault(image.entry, (_entry_size(image), "_start", 0))   # stripped
    starts, ends, names = [], [], []
    ordered = sorted(table.items())
    for i, (addr, (size, name, limit)) in enumerate(ordered):
        nxt = ordered[i + 1][0] if i + 1 < len(ordered) else addr + 4096
        if not size and limit > addr:
            nxt = min(nxt, limit)   # _init ends with .init, never over .plt
        starts.append(addr)
        ends.append(addr + size if size else nxt)
        names.append(name)
    return starts, ends, names, sources

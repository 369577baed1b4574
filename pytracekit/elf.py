"""The function symbols of an ELF file (.symtab and .dynsym), read directly.

Enough for `list -x` and for checking a name before a uprobe is attached;
BCC does the address resolution when probes attach one by one, and
file_offset() does it for uprobe_multi links (which take file offsets).
"""
from __future__ import annotations

import contextlib
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import NotFoundError, UsageError

SHT_SYMTAB, SHT_DYNSYM = 2, 11
PT_LOAD = 1
ELF64_HEADER = 64
STT_FUNC, STT_GNU_IFUNC = 2, 10


@dataclass(frozen=True, order=True)
class Symbol:
    name: str
    address: int
    size: int


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no such binary: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a binary") from None
    except PermissionError:
        raise NotFoundError(f"cannot read {path}: permission denied") from None


def _read_elf(path: str) -> bytes:
    data = _read(path)
    if data[:4] != b"\x7fELF":
        raise UsageError(f"{path} is not an ELF binary")
    if len(data) < ELF64_HEADER:
        raise UsageError(f"{path} is a truncated ELF file ({len(data)} bytes, shorter than "
                         "its header)")
    if data[4] != 2 or data[5] != 1:
        raise UsageError(f"{path}: only 64-bit little-endian ELF files are supported")
    return data


@contextlib.contextmanager
def _intact(path: str):
    """Offsets in a truncated or damaged file point past its end: one line, not
    struct.error."""
    try:
        yield
    except (struct.error, ValueError, IndexError):
        raise UsageError(f"{path} is a truncated or damaged ELF file (its headers point "
                         "past its end)") from None


def pt_load_segments(data: bytes) -> list[tuple[int, int, int]]:
    """The PT_LOAD program headers of an ELF64 image: (p_vaddr, p_filesz, p_offset) each."""
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    segments = []
    for i in range(phnum):
        p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if p_type == PT_LOAD:
            segments.append((p_vaddr, p_filesz, p_offset))
    return segments


@lru_cache(maxsize=32)
def load_segments(path: str) -> tuple[tuple[int, int, int], ...]:
    """The PT_LOAD program headers of `path`: (p_vaddr, p_filesz, p_offset) each."""
    data = _read_elf(path)
    with _intact(path):
        return tuple(pt_load_segments(data))


def file_offset(path: str, address: int) -> int:
    """Where symbol address `address` (as .symtab gives it) is in the file:
    address - p_vaddr + p_offset of the PT_LOAD segment that holds it."""
    for vaddr, filesz, offset in load_segments(path):
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    raise NotFoundError(f"{path}: address {address:#x} is in no loadable segment of the file")


def functions(path: str) -> list[Symbol]:
    """Defined functions, sorted by name, one entry per name."""
    data = _read_elf(path)
    with _intact(path):
        return _functions(data)


def _functions(data: bytes) -> list[Symbol]:
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    found: dict[str, Symbol] = {}
    for (_name, kind, _flags, _addr, offset, size, link, _info, _align, entsize) in sections:
        if kind not in (SHT_SYMTAB, SHT_DYNSYM) or not entsize:
            continue
        strtab = sections[link]
        str_off, str_size = strtab[4], strtab[5]
        for pos in range(offset, offset + size, entsize):
            st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from(
                "<IBBHQQ", data, pos)
            if st_info & 0xF not in (STT_FUNC, STT_GNU_IFUNC) or st_shndx == 0 or not st_value:
                continue
            end = data.index(b"\0", str_off + st_name, str_off + str_size)
            name = data[str_off + st_name:end].decode(errors="replace")
            name = name.split("@", 1)[0]
            if name and name not in found:
                found[name] = Symbol(name, st_value, st_size)
    return sorted(found.values())

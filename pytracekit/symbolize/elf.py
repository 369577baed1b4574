"""The function symbols of an ELF file (.symtab and .dynsym), for `list -x`
and for checking a name before a uprobe is attached; file_offset() gives
uprobe_multi links their file offsets. Read through elfsyms, the one ELF
reader; this module turns its failures into clear errors.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .elfsyms import ElfImage, NotElf, map_file
from ..errors import NotFoundError, UsageError

ELF64_HEADER = 64


@dataclass(frozen=True, order=True)
class Symbol:
    name: str
    address: int
    size: int


def _image(path: str) -> ElfImage:
    if Path(path).is_dir():
        raise UsageError(f"{path} is a directory, not a binary")
    try:
        data = map_file(path)
    except FileNotFoundError:
        raise NotFoundError(f"no such binary: {path}") from None
    except PermissionError:
        raise NotFoundError(f"cannot read {path}: permission denied") from None
    except OSError as exc:
        raise NotFoundError(f"cannot read {path}: {exc.strerror}") from None
    if data[:4] != b"\x7fELF":
        raise UsageError(f"{path} is not an ELF binary")
    if len(data) < ELF64_HEADER:
        raise UsageError(f"{path} is a truncated ELF file ({len(data)} bytes, shorter than "
                         "its header)")
    if data[4] != 2 or data[5] != 1:
        raise UsageError(f"{path}: only 64-bit little-endian ELF files are supported")
    try:
        image = ElfImage(data)
        if image.intact:
            return image
    except (NotElf, struct.error, ValueError, IndexError):
        pass
    raise UsageError(f"{path} is a truncated or damaged ELF file (its headers point "
                     "past its end)")


@lru_cache(maxsize=32)
def load_segments(path: str) -> tuple[tuple[int, int, int], ...]:
    """The PT_LOAD program headers of `path`: (p_vaddr, p_filesz, p_offset) each."""
    return tuple((vaddr, filesz, offset) for offset, vaddr, filesz in _image(path).segments)


def file_offset(path: str, address: int) -> int:
    """Where symbol address `address` (as .symtab gives it) is in the file:
    address - p_vaddr + p_offset of the PT_LOAD segment that holds it."""
    for vaddr, filesz, offset in load_segments(path):
        if vaddr <= address < vaddr + filesz:
            return address - vaddr + offset
    raise NotFoundError(f"{path}: address {address:#x} is in no loadable segment of the file")


def functions(path: str) -> list[Symbol]:
    """Defined functions, sorted by name, one entry per name."""
    found: dict[str, Symbol] = {}
    image = _image(path)
    try:
        table = image.functions()
    except (struct.error, ValueError, IndexError):   # a symbol table past the end
        raise UsageError(f"{path} is a truncated or damaged ELF file (its headers point "
                         "past its end)") from None
    for value, size, name in table:
        name = name.split("@", 1)[0]
        if name and name not in found:
            found[name] = Symbol(name, value, size)
    return sorted(found.values())

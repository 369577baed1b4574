"""Naming data addresses (a global mutex, a lock) that BCC's symbolizer,
which knows only functions, leaves `[unknown]`.

User addresses: find the mapping in /proc/PID/maps, then the ELF object
symbol (STT_OBJECT/STT_TLS in .symtab or .dynsym) covering it. Kernel
addresses: /proc/kallsyms data symbols (present with CONFIG_KALLSYMS_ALL).
Only ELF64 little-endian (x86_64, arm64) files are read.
"""
from __future__ import annotations

import bisect
from functools import lru_cache
from pathlib import Path

from .elfsyms import load_image
from ..textsafe import printable


@lru_cache(maxsize=64)
def _elf_objects(path: str) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, int]]]:
    """(object symbols sorted by address: (value, size, name), PT_LOAD segments:
    (file offset, vaddr, file size)) of one ELF file; empty when unreadable."""
    image = load_image(path)
    if image is None:
        return [], []
    return image.objects(), list(image.segments)


def _lookup(symbols: list[tuple[int, int, str]], vaddr: int) -> str | None:
    i = bisect.bisect_right(symbols, (vaddr, float("inf"), "")) - 1
    if i >= 0:
        value, size, name = symbols[i]
        if value <= vaddr < value + max(size, 1):
            return name if vaddr == value else f"{name}+{vaddr - value:#x}"
    return None


def user_data_symbol(pid: int, address: int) -> str | None:
    """`name [module]` for a global in the process's binaries, or None."""
    try:
        lines = Path(f"/proc/{pid}/maps").read_text(errors="surrogateescape").splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if not start <= address < end:
            continue
        path = parts[5].removesuffix(" (deleted)")
        symbols, segments = _elf_objects(path)
        file_off = address - start + int(parts[2], 16)
        for seg_off, seg_vaddr, _size in segments:
            # .bss lies past the file-backed part; map through the segment base
            vaddr = file_off - seg_off + seg_vaddr
            name = _lookup(symbols, vaddr)
            if name:   # a binary's names and file name are anyone's: see textsafe
                return printable(f"{name} [{Path(path).name}]")
        return None
    return None


# Without CONFIG_KALLSYMS_ALL kallsyms still lists a few section markers
# (__start_rodata...): a lock is not "in" them, so such a list is unusable.
MIN_KALLSYMS_DATA = 1000
MAX_KERNEL_OFFSET = 4096      # sizes are unknown: a lock this far in is not named


@lru_cache(maxsize=1)
def _kallsyms_data() -> list[tuple[int, int, str]]:
    symbols = []
    try:
        text = Path("/proc/kallsyms").read_text()
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "dDbBrR" and int(parts[0], 16):
            symbols.append((int(parts[0], 16), 0, parts[2]))
    if len(symbols) < MIN_KALLSYMS_DATA:
        return []
    symbols.sort()
    # sizes are not in kallsyms: each symbol runs to the next, at most 4 KiB
    sized = []
    for i, (address, _size, name) in enumerate(symbols):
        gap = symbols[i + 1][0] - address if i + 1 < len(symbols) else 1
        sized.append((address, min(gap, MAX_KERNEL_OFFSET), name))
    return sized


def kernel_data_symbol(address: int,
                       kallsyms: list[tuple[int, int, str]] | None = None) -> str | None:
    """A kernel global's name (`name+0x10`), or None (heap, or no data symbols)."""
    return _lookup(_kallsyms_data() if kallsyms is None else kallsyms, address)

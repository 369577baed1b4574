"""The kernel's function symbols, read from /proc/kallsyms once per boot.

Reading /proc/kallsyms costs ~50 ms of kernel CPU to generate its 5 MB and as
much again to parse; every stack tool paid it on every run (BCC reads it at
its first kernel name). The kernel's own symbols and its modules' do not move
until a reboot or a module (un)load, so the parsed table is kept in the cache
(root's /var/cache/pytracekit/kallsyms, mode 0600: the addresses are the
kernel's layout, which kptr_restrict hides from other users), keyed by the
boot id and /proc/modules' names, sizes and addresses, and loaded in about a
millisecond after the first run.

Symbols that come and go while the system runs (BPF programs and trampolines,
kprobe and ftrace pages: their "module" is [bpf] or [__builtin__...]) are not
kept: an address is named from the table only when the symbols on both sides
of it belong to the same module (the kernel image and each module's text are
contiguous, so nothing else can lie between them). Anything else is left to
the caller's live lookup (Symbolizer.kernel: BCC's fresh read)."""
from __future__ import annotations

import array
import bisect
import os
import re
import struct
from pathlib import Path
from typing import Callable

from ..digest import sha256

MAGIC = b"pytracekit kallsyms 1\n"
_HEADER = struct.Struct("<QQ")            # symbols, bytes of names
CORE_MODULE = "kernel"                   # BCC's module name for the kernel image's symbols
# among symbols at one address, the name shown: global, then weak, then local;
# then the fewest leading underscores (the alias people call), then kallsyms' order.
# (BCC, like this table, skips data symbols: never a frame.)
_TYPE_RANK = {ord("T"): 0, ord("W"): 1, ord("t"): 2, ord("w"): 3}


class KernelSymbolTable:
    """Sorted addresses, and for each its name and module, from kallsyms."""

    def __init__(self, addresses: "array.array[int]", offsets: "array.array[int]",
                 names: bytes, source: str) -> None:
        self.addresses = addresses      # ascending, one entry per address
        self.offsets = offsets          # start of entry i's "name\tmodule" in names
        self.names = names
        self.source = source            # "kallsyms" or "cache": how it was had

    def __len__(self) -> int:
        return len(self.addresses)

    def _entry(self, i: int) -> tuple[str, str]:
        end = self.offsets[i + 1] - 1 if i + 1 < len(self.offsets) else len(self.names)
        name, _, module = self.names[self.offsets[i]:end].decode(errors="replace").partition("\t")
        return name, module

    def lookup(self, address: int) -> tuple[str, str, int] | None:
        """(name, module, offset) of the function holding `address`, or None
        when the table cannot say (outside every module it holds, past the
        last symbol of one, or in what it leaves to a live read)."""
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0 or i + 1 >= len(self.addresses):
            return None
        name, module = self._entry(i)
        if module != self._entry(i + 1)[1]:
            return None
        return name, module, address - self.addresses[i]

    def packed(self) -> bytes:
        return b"".join([MAGIC, _HEADER.pack(len(self.addresses), len(self.names)),
                         self.addresses.tobytes(), self.offsets.tobytes(), self.names])

    @classmethod
    def unpacked(cls, data: bytes) -> "KernelSymbolTable | None":
        if not data.startswith(MAGIC):
            return None
        at = len(MAGIC)
        try:
            count, names_size = _HEADER.unpack_from(data, at)
        except struct.error:
            return None
        at += _HEADER.size
        addresses, offsets = array.array("Q"), array.array("I")
        if len(data) != at + count * (addresses.itemsize + offsets.itemsize) + names_size:
            return None
        addresses.frombytes(data[at:at + count * addresses.itemsize])
        at += count * addresses.itemsize
        offsets.frombytes(data[at:at + count * offsets.itemsize])
        return cls(addresses, offsets, data[at + count * offsets.itemsize:], "cache")


# "ADDRESS TYPE NAME" and "\t[MODULE]" for a module's; data types left out
_LINE = re.compile(rb"^([0-9a-fA-F]+) ([^bBdDrR\s]) (\S+)(?:\t\[(\S+)\])?", re.M)


def _rank(kind: bytes, name: bytes) -> tuple[int, int]:
    return _TYPE_RANK.get(kind[0], 4), len(name) - len(name.lstrip(b"_"))


def parse(text: bytes, source: str = "kallsyms") -> KernelSymbolTable:
    """The table from kallsyms' text (a regular expression over the whole of
    it: several times faster than splitting its 120,000 lines in Python)."""
    rows = [row for row in _LINE.findall(text)
            if not (row[3] == b"bpf" or row[3].startswith(b"__builtin__"))]   # dynamic
    numbers = [int(row[0], 16) for row in rows]
    addresses, offsets, entries = array.array("Q"), array.array("I"), []
    kept, at = (b"", b""), 0
    for i in sorted(range(len(rows)), key=numbers.__getitem__):   # stable: kallsyms' order
        address = numbers[i]
        if not address:   # hidden by kptr_restrict, or a per-CPU offset
            continue
        _hex, kind, name, module = rows[i]
        entry = name + b"\t" + (module or CORE_MODULE.encode())
        if addresses and addresses[-1] == address:   # an alias: keep the better name
            if _rank(kind, name) < _rank(*kept):
                at += len(entry) - len(entries[-1])
                entries[-1], kept = entry, (kind, name)
            continue
        addresses.append(address)
        offsets.append(at)
        entries.append(entry)
        kept, at = (kind, name), at + len(entry) + 1
    return KernelSymbolTable(addresses, offsets, b"\n".join(entries), source)


def cache_key() -> str | None:
    """What the table depends on: this boot, and which modules sit where."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            boot = f.read().strip()
    except OSError:
        return None
    digest = sha256(boot)
    try:
        with open("/proc/modules", "rb") as f:
            for line in f:   # name, size, address: not the use counts, which move
                parts = line.split()
                digest.update(b" ".join(parts[:2] + parts[5:6]) + b"\n")
    except FileNotFoundError:   # no module support: the kernel image alone
        pass
    except OSError:
        return None
    return digest.hexdigest()[:32]


def cache_dir() -> Path:
    from ..kernel.headers import cache_root
    return cache_root() / "kallsyms"


def read_kallsyms() -> bytes | None:
    try:
        with open("/proc/kallsyms", "rb") as f:
            return f.read()
    except OSError:
        return None


def load(use_cache: bool = True,
         read: Callable[[], bytes | None] = read_kallsyms) -> KernelSymbolTable | None:
    """The table, from the cache when this boot's is there, else from `read()`
    (/proc/kallsyms; a caller may read it at low priority: the kernel spends
    its ~50 ms writing it, without the GIL) and kept for the next run. None
    when kallsyms shows no addresses (not root, kptr_restrict) or cannot be read."""
    key = cache_key() if use_cache else None
    path = cache_dir() / f"{key}.syms" if key else None
    if path is not None:
        from ..kernel.headers import read_trusted
        data = read_trusted(path)
        table = KernelSymbolTable.unpacked(data) if data else None
        if table is not None:
            return table
    text = read()
    table = parse(text) if text else None
    if table is None or not len(table):
        return None
    if path is not None:
        _store(path, table)
    return table


def _store(path: Path, table: KernelSymbolTable) -> None:
    """Keep the table, alone: another boot's or module set's is of no use."""
    from ..kernel.headers import write_cache_file
    if not write_cache_file(path, table.packed(), mode=0o600):
        return   # a read-only cache: kallsyms is read each run
    try:
        for old in os.scandir(path.parent):
            if old.name.endswith(".syms") and old.name != path.name:
                os.unlink(old.path)
    except OSError:
        pass

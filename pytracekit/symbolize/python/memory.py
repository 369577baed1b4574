"""Reading another process's memory (/proc/PID/mem) and CPython objects in it."""
from __future__ import annotations

import ctypes
import functools
import os
import struct
from array import array
from typing import Optional

from . import layouts as pl

MAX_STRING = 4096      # characters: names and paths are short; more means garbage
MAX_BYTES = 1 << 20    # a line table larger than this is not a line table
IOV_MAX = 1024         # ranges in one process_vm_readv
USER_SPACE_END = 1 << 56   # x86-64 user addresses end below (5-level paging; 4-level: 1 << 47)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.process_vm_readv.restype = ctypes.c_ssize_t
    libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong,
                                      ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    return libc


class ProcessMemory:
    """Reads from /proc/PID/mem; every read raises OSError when it fails."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._file = open(f"/proc/{pid}/mem", "rb", buffering=0)

    def read(self, address: int, size: int) -> bytes:
        if not 0 < address < USER_SPACE_END:   # a stale or torn pointer: not memory
            raise OSError(f"bad address {address:#x}")
        if self.closed:
            raise OSError(f"process {self.pid} is gone")
        data = os.pread(self._file.fileno(), size, address)   # one system call, not seek + read
        if len(data) != size:
            raise OSError(f"short read at {address:#x}")
        return data

    def read_many(self, addresses: list[int], size: int) -> list[bytes | None]:
        """`size` bytes at each address in one system call (process_vm_readv);
        None where it failed (see read_ranges)."""
        return self.read_ranges([(a, size) for a in addresses])

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        """The bytes of each (address, size) in one system call per IOV_MAX
        ranges (process_vm_readv); None where it failed (that range and, as
        the kernel stops there, the ones after it: read those one by one)."""
        out: list[bytes | None] = []
        for i in range(0, len(ranges), IOV_MAX):
            out += self._read_ranges(ranges[i:i + IOV_MAX])
        return out

    def _read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes | None]:
        n = len(ranges)
        if n == 0 or self.closed:
            return [None] * n
        total = sum(size for _, size in ranges)
        # plain buffers passed by address: a ctypes buffer and iovec array type
        # made per call were most of a new Python stack's reading (churn)
        buf = bytearray(max(total, 1))
        anchor = ctypes.c_char.from_buffer(buf)   # its address; keeps buf fixed
        local = array("Q", (ctypes.addressof(anchor), total))
        # (address, size) pairs as the iovecs' memory; an address outside user
        # space is passed as 0: the kernel fails it
        remote = array("Q", [v for a, size in ranges
                             for v in (a if 0 < a < USER_SPACE_END else 0, size)])
        got = max(_libc().process_vm_readv(self.pid, local.buffer_info()[0], 1,
                                           remote.buffer_info()[0], n, 0), 0)
        del anchor
        view = memoryview(buf)
        out: list[bytes | None] = []
        pos = 0
        for address, size in ranges:
            if pos + size > got:
                break
            out.append(view[pos:pos + size].tobytes())
            pos += size
        for address, size in ranges[len(out):]:
            try:
                out.append(self.read(address, size))
            except OSError:
                out.append(None)
        return out

    def u64(self, address: int) -> int:
        return struct.unpack("<Q", self.read(address, 8))[0]

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()


def read_str(mem: ProcessMemory, layout: pl.PyLayout, obj: int) -> Optional[str]:
    """A compact `str` object's text (names and file names are compact)."""
    state = struct.unpack("<I", mem.read(obj + layout.unicode_state, 4))[0]
    kind = (state >> pl.UNICODE_KIND_SHIFT) & pl.UNICODE_KIND_MASK
    compact = (state >> pl.UNICODE_COMPACT_BIT) & 1
    is_ascii = (state >> pl.UNICODE_ASCII_BIT) & 1
    length = mem.u64(obj + layout.unicode_length)
    if not compact or kind not in (1, 2, 4) or length > MAX_STRING:
        return None
    if is_ascii:
        return mem.read(obj + layout.unicode_ascii_data, length).decode("ascii", "replace")
    raw = mem.read(obj + layout.unicode_compact_data, length * kind)
    return raw.decode({1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}[kind], "replace")


def read_bytes(mem: ProcessMemory, layout: pl.PyLayout, obj: int) -> Optional[bytes]:
    size = mem.u64(obj + layout.bytes_size)
    if size > MAX_BYTES:
        return None
    return mem.read(obj + layout.bytes_data, size) if size else b""

"""Reading a result map and emptying it for the next interval, without losing
what the kernel adds between the two: each entry is deleted in the same step
as it is read, so an update racing the read lands in the next interval
(a read followed by `table.clear()` drops every update made in between)."""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
from typing import Any, Iterable, Iterator


def snapshot(table: Any, chunk: int = 1024) -> list[tuple[Any, Any]]:
    """Every (key, value) of a map. Hash maps are read by BPF_MAP_LOOKUP_BATCH:
    BCC's walk by next-key restarts from the first key whenever the key it
    stands on is deleted, so a map the kernel keeps deleting from (memleak's
    frees) could keep it walking for ever. Other maps: BCC's items()."""
    from bcc.libbcc import lib
    entries = _batches(table, lib.bpf_lookup_batch, chunk) if _is_hash(table) else None
    return list(table.items()) if entries is None else entries


def array_snapshot(table: Any) -> list[tuple[Any, Any]]:
    """Every (index, value) of an array map (per-CPU: the value is BCC's array
    of the CPUs' values) in BPF_MAP_LOOKUP_BATCH calls (BCC's items() makes a
    system call per index)."""
    from bcc.libbcc import lib
    entries = _batches(table, lib.bpf_lookup_batch, max(1, len(table)))
    return list(table.items()) if entries is None else entries


def drain(table: Any) -> list[tuple[Any, Any]]:
    """Every (key, value) of a BPF hash map, each deleted in the same step as
    it is read (BPF_MAP_LOOKUP_AND_DELETE_BATCH: atomic per bucket; where batch
    operations are missing, entry by entry). Entries added meanwhile stay for
    the next drain."""
    from bcc.libbcc import lib
    entries = _batches(table, lib.bpf_lookup_and_delete_batch, 1024)
    if entries is not None:
        return entries
    entries = []
    for key, _ in snapshot(table):
        value = table.Leaf()
        if lib.bpf_lookup_and_delete(table.map_fd, ctypes.byref(key), ctypes.byref(value)) == 0:
            entries.append((key, value))
        elif ctypes.get_errno() != errno.ENOENT:     # not supported for hash maps here
            try:
                entries.append((key, table.pop(key)))
            except KeyError:
                pass
    return entries


def raw_snapshot(table: Any, chunk: int = 1024) -> Iterator[tuple[memoryview, memoryview, int]]:
    """A hash map read whole in BPF_MAP_LOOKUP_BATCH calls, as (keys, values,
    count) buffers per call, for a caller that parses them itself (no ctypes
    object per entry); OSError where the kernel has no batch operations."""
    from bcc.libbcc import lib
    for keys, values, count in _raw_batches(table, lib.bpf_lookup_batch, chunk):
        yield memoryview(keys).cast("B"), memoryview(values).cast("B"), count


def _batches(table: Any, operation: Any, chunk: int) -> list[tuple[Any, Any]] | None:
    """A hash map read whole, `chunk` entries per call of a libbcc batch
    operation (lookup, or lookup-and-delete); None where the kernel has none."""
    entries: list[tuple[Any, Any]] = []
    key_size, value_size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
    try:
        for keys, values, count in _raw_batches(table, operation, chunk):
            entries += [(table.Key.from_buffer_copy(keys, i * key_size),   # BCC's own types,
                         table.Leaf.from_buffer_copy(values, i * value_size))   # also for ints
                        for i in range(count)]
    except _NoBatches:
        return None
    return entries


class _NoBatches(OSError):
    """The kernel has no batch operations for this map."""


def _raw_batches(table: Any, operation: Any, chunk: int) -> Iterator[tuple[Any, Any, int]]:
    """The ctypes key and value arrays of each call of a batch operation and
    how many entries it filled, until the map's end; _NoBatches when the
    first call fails before any entry was read."""
    token_in, token_out = ctypes.c_uint32(0), ctypes.c_uint32(0)
    first, read = True, False
    while True:
        keys, values = (table.Key * chunk)(), (table.Leaf * chunk)()
        count = ctypes.c_uint32(chunk)
        res = operation(table.map_fd, None if first else ctypes.byref(token_in),
                        ctypes.byref(token_out), ctypes.byref(keys), ctypes.byref(values),
                        ctypes.byref(count))
        err = ctypes.get_errno()
        if count.value:
            read = True
            yield keys, values, count.value
        if res == 0:
            token_in.value, first = token_out.value, False
            continue
        if err == errno.ENOENT:        # the end of the map
            return
        if err == errno.ENOSPC and count.value == 0:   # one bucket holds more than a chunk
            chunk *= 2
            continue
        message = f"reading BPF map {table.Key.__name__}: {os.strerror(err)}"
        if first and not read:         # batch operations not available here
            raise _NoBatches(err, message)
        raise OSError(err, message)


class DrainedTable:
    """A drained snapshot that reads like the BCC table it came from
    (items/keys/values/iteration/lookup); anything else goes to the table."""

    def __init__(self, table: Any) -> None:
        self._table = table
        self._entries = drain(table)
        self._by_key = {bytes(k): v for k, v in self._entries}

    def items(self) -> list[tuple[Any, Any]]:
        return list(self._entries)

    def keys(self) -> list[Any]:
        return [k for k, _ in self._entries]

    def values(self) -> list[Any]:
        return [v for _, v in self._entries]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._by_key[bytes(key)]
        except KeyError:
            raise KeyError(key) from None

    def get(self, key: Any, default: Any = None) -> Any:
        return self._by_key.get(bytes(key), default)

    def clear(self) -> None:
        """Already empty in the kernel: what was read is what was removed."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


@contextlib.contextmanager
def drained(prog: Any, names: Iterable[str]) -> Iterator[None]:
    """While inside, `prog[name]` for each name is a DrainedTable: a report
    made inside reads, and empties, exactly what it prints."""
    program = prog
    while not hasattr(program, "_drained"):   # a tool's session wraps its Program
        program = program.prog
    tables = {name: program[name] for name in names}
    # hash maps are drained entry by entry; arrays (per-CPU sums, fixed slots)
    # cannot lose entries, only be zeroed after the report, as before
    program._drained = {name: DrainedTable(t) for name, t in tables.items() if _is_hash(t)}
    try:
        yield
    finally:
        program._drained = {}
        for name, table in tables.items():
            if not _is_hash(table):
                table.clear()


def _is_hash(table: Any) -> bool:
    return type(table).__name__ in ("HashTable", "LruHash")

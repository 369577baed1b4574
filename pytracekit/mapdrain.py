"""Reading a result map and emptying it for the next interval, without losing
what the kernel adds between the two: each entry is deleted in the same step
as it is read, so an update racing the read lands in the next interval
(a read followed by `table.clear()` drops every update made in between)."""
from __future__ import annotations

import contextlib
import ctypes
import errno
from typing import Any, Iterable, Iterator


def drain(table: Any) -> list[tuple[Any, Any]]:
    """Every (key, value) of a BPF hash map, each deleted in the same step as
    it is read (BPF_MAP_LOOKUP_AND_DELETE_ELEM, Linux 5.14+; older kernels
    get a lookup then a delete). Entries added meanwhile stay for the next drain."""
    from bcc.libbcc import lib
    entries = []
    for key in list(table.keys()):
        value = table.Leaf()
        if lib.bpf_lookup_and_delete(table.map_fd, ctypes.byref(key), ctypes.byref(value)) == 0:
            entries.append((key, value))
        elif ctypes.get_errno() != errno.ENOENT:     # not supported for hash maps here
            try:
                entries.append((key, table.pop(key)))
            except KeyError:
                pass
    return entries


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
    snapshot = {name: DrainedTable(program[name]) for name in names}
    program._drained = snapshot
    try:
        yield
    finally:
        program._drained = {}

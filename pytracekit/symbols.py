"""Turning stack ids and addresses into frames.

BCC's symbolizer does the ELF work (symbol tables, debuglink and build-id
debug files, /tmp/perf-PID.map for JITs); this layer caches per (pid, address),
names what it cannot resolve `[unknown]` and counts those frames so the loss
report can say how many there were.
"""
from __future__ import annotations

from typing import Any, Iterable

from .model import Frame

UNKNOWN = "[unknown]"


class Symbolizer:
    def __init__(self, bpf: Any, *, show_module: bool = False, show_offset: bool = False) -> None:
        self.bpf = bpf
        self.show_module = show_module
        self.show_offset = show_offset
        self._cache: dict[tuple[int, int], Frame] = {}
        self.unknown_frames = 0

    def kernel(self, address: int) -> Frame:
        key = (-1, address)
        frame = self._cache.get(key)
        if frame is None:
            raw = self.bpf.ksym(address, show_module=self.show_module,
                                show_offset=self.show_offset)
            name = raw.decode(errors="replace") if raw else UNKNOWN
            frame = Frame(name if name else UNKNOWN, "kernel", address=address)
            self._cache[key] = frame
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def user(self, address: int, pid: int) -> Frame:
        key = (pid, address)
        frame = self._cache.get(key)
        if frame is None:
            raw = self.bpf.sym(address, pid, show_module=self.show_module,
                               show_offset=self.show_offset)
            name = raw.decode(errors="replace") if raw else UNKNOWN
            frame = Frame(name if name else UNKNOWN, "user", address=address)
            self._cache[key] = frame
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def stack(self, stack_map: Any, stack_id: int, *, pid: int = -1,
              kernel: bool = False) -> list[Frame]:
        """Frames of one stored stack, leaf first; [] for a negative (missing) id."""
        if stack_id < 0:
            return []
        addresses: Iterable[int] = stack_map.walk(stack_id)
        if kernel:
            return [self.kernel(a) for a in addresses]
        return [self.user(a, pid) for a in addresses]

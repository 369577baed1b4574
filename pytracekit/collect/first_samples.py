"""The user half of bpf/ptk_first_samples.h: samples of a process the
in-kernel unwinder had not loaded yet, copied (registers, the top of the user
stack) instead of counted, are unwound here with the same CFI tables
(unwind_table.unwind_python, the BPF walk's twin) once the process's maps are
known, and added to the profile as the kernel's walk would have stored them
(one stopped early, by a missing rule or a return address outside the
mappings, is counted in unwind_incomplete as the kernel counts its own). A
copy that cannot stand for its stack (no maps snapshot: the process exited
first; another program since; the bytes ran out) is counted as the kernel
counted it: its frame-pointer walk, marked, in unwind_fallback.
docs/design/unwinding.md §9.
"""
from __future__ import annotations

import ctypes
import functools
import os
import struct
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from ..model import LossReport, Sample
from ..symbolize.unwind_table import (STOP_BAD_RA, STOP_BAD_READ, STOP_DEPTH, STOP_END,
                                      ModuleRange, PackedTable, UnwindTable, unwind_python)
from . import cstruct
from .stack_maps import sample_from_key
from .stream import CallbackRings

DEFINES = {"FIRST_SAMPLES": 1}
# A copy waits for its process's load (its maps then snapshotted) this long at
# most: the last settle re-snapshot is 0.5 s after the announcement
# (stack_maps.SETTLE_S); a process gone is unwound with its last snapshot at once.
WAIT_S = 0.6
PENDING_MAX = 256      # copies kept waiting (32 KB each: 8 MB); past it the oldest are unwound now
TABLES_KEPT = 16       # modules' packed row tables, least recently used dropped first
                       # (python3.11: ~65k rows, ~0.8 MB; reread from the disk cache)


@functools.cache
def _record() -> tuple[Any, int, int, int]:
    """struct ptk_first_sample (its ctypes type; the key's offset and size, the
    stack's offset): read from the header at the first copy, not at start-up."""
    record = cstruct.struct_layout("ptk_first_samples.h", "ptk_first_sample").ctype()
    return record, record.key.offset, record.key.size, record.stack.offset


_U64 = struct.Struct("<Q")


@dataclass
class _Copy:
    """One copied sample, waiting for its process's maps."""
    key: bytes         # struct ptk_stack_key, as the kernel would have counted it
    pid: int
    ip: int
    sp: int
    bp: int
    base: int          # the user address of stack[0]
    exe_ino: int
    start_code: int
    stack: bytes
    received: float


class FirstSamples:
    """Receives a program's `first_samples` ring (compiled with DEFINES) and
    keeps what the copies became: poll() wraps the tool's poll, samples()
    adds them to a read."""

    def __init__(self, prog: Any, symbolizer: Any) -> None:
        self.prog, self.symbolizer = prog, symbolizer
        self.pending: list[_Copy] = []
        # (key bytes, user frames leaf first, each a Frame or an _InFile) -> samples
        self.unwound: Counter = Counter()
        self.incomplete = 0                # of them, stopped early (as the kernel's walk would)
        self.marked: Counter = Counter()   # key bytes -> samples left to the frame-pointer walk
        self.tables: OrderedDict[str, PackedTable | None] = OrderedDict()
        self._last_ranges: tuple[Any, list[ModuleRange]] | None = None   # (snapshot, _ranges)
        self.stats: Counter = Counter()    # received, unwound, and why not (--verbose)
        self.rings = CallbackRings(prog)
        self.rings.open("first_samples", self._on_copy)

    def _on_copy(self, _ctx: Any, data: int, size: int) -> int:
        record, key_offset, key_size, stack_offset = _record()
        rec = ctypes.cast(data, ctypes.POINTER(record)).contents
        length = min(rec.len, size - stack_offset)
        self.pending.append(_Copy(
            ctypes.string_at(data + key_offset, key_size), rec.key.pid, rec.ip, rec.sp,
            rec.bp, rec.base, rec.exe_ino, rec.start_code,
            ctypes.string_at(data + stack_offset, length), time.monotonic()))
        self.stats["received"] += 1
        if len(self.pending) > PENDING_MAX:
            self._unwind(self.pending.pop(0))   # counted now, unwound or not
        return 0

    def poll(self, inner: Callable[[int], None]) -> Callable[[int], None]:
        """The tool's poll (which also drains this ring: BCC polls all of a
        program's rings at once), then the copies whose process is loaded."""
        def poll(timeout_ms: int) -> None:
            inner(timeout_ms)
            if self.pending:
                self.resolve()
        return poll

    def resolve(self, final: bool = False) -> None:
        """Unwind the copies whose process is loaded (its maps as the kernel's
        tables have them) or gone; one that misses a mapping (read before
        ld.so mapped it) waits for the next snapshot until WAIT_S; `final`: all."""
        now = time.monotonic()
        unwinder = getattr(self.symbolizer, "unwinder", None)
        loaded = getattr(unwinder, "loaded", {})
        requested = getattr(unwinder, "pending", {})   # announced again (an exec): not yet
        waiting = []
        alive_pids: dict[int, bool] = {}   # (a process's copies come together: one stat)
        for copy in self.pending:
            late = final or now - copy.received >= WAIT_S
            alive = alive_pids.get(copy.pid)
            if alive is None:
                alive = alive_pids[copy.pid] = os.path.exists(f"/proc/{copy.pid}")
            if late or not alive or (copy.pid in loaded and copy.pid not in requested):
                if self._unwind(copy, retry=not late and alive):
                    continue
            waiting.append(copy)
        self.pending = waiting

    def _unwind(self, copy: _Copy, retry: bool = False) -> bool:
        """Count the copy, unwound or not; False (not counted) when `retry` and
        it missed a mapping a later snapshot may have."""
        frames, why = self._frames(copy)
        if retry and why in (STOP_BAD_RA, "another program"):
            return False
        if frames is None:
            self.stats[why] += 1
            self.marked[copy.key] += 1
            return True
        self.unwound[(copy.key, frames)] += 1
        self.stats["unwound"] += 1
        if why not in (STOP_END, STOP_DEPTH):   # stopped early: counted as the kernel counts it
            self.incomplete += 1
            self.stats[f"incomplete ({why})"] += 1
        return True

    def _frames(self, copy: _Copy) -> "tuple[tuple | None, str]":
        """The copy's user frames, leaf first, placed (_place) as the kernel's
        unwinder places its own, and why the walk stopped: the frames the kernel's walk
        would have stored (its end, its depth, or where a rule or a return
        address failed it, which it counts as incomplete); None when the copy
        cannot stand for the stack (no maps, another program, bytes ran out)."""
        users = self.symbolizer.users
        if copy.pid not in users.processes:
            users.remember(copy.pid)
        snap = users.processes.get(copy.pid)
        if snap is None or not snap.mappings:
            return None, "no maps"
        if snap.exe_inode != copy.exe_ino or snap.find(copy.start_code) is None:
            return None, "another program"   # taken before an exec (or read before it)
        stack, base = copy.stack, copy.base

        def read(address: int) -> int | None:
            off = address - base
            return _U64.unpack_from(stack, off)[0] if 0 <= off <= len(stack) - 8 else None
        addresses, why = unwind_python(self._ranges(snap), copy.ip, copy.sp, copy.bp, read)
        if why == STOP_BAD_READ:   # (the copy's end, mostly: 32 KB of a deeper stack)
            return None, why
        before = self.symbolizer.unknown_frames   # counted per read, in samples()
        try:
            return tuple(self._place(address, i, copy.pid)
                         for i, address in enumerate(addresses)), why
        finally:
            self.symbolizer.unknown_frames = before

    def _ranges(self, snap: Any) -> list[ModuleRange]:
        """The process's executable mappings with their modules' tables (a
        mapping without one takes frame-pointer steps, as in the kernel).
        Kept for the last snapshot asked (a new snapshot is a new object): a
        process's copies are unwound one after another. A table is read
        when a walk first steps into its mapping: a python process maps ~30
        modules, a walk passes through a few."""
        if self._last_ranges is not None and self._last_ranges[0] is snap:
            return self._last_ranges[1]
        out = []
        for m in snap.mappings:
            table, bias = None, 0
            if m.path.startswith("/") or m.path == "[vdso]":
                image = self.symbolizer.users.binary(m.path, snap.pid).image
                vaddr = image.vaddr_of_offset(m.offset) if image is not None else None
                if vaddr is not None:
                    bias, table = m.start - vaddr, _LazyTable(self, image, m.path)
            out.append(ModuleRange(m.start, m.end, bias, table))
        self._last_ranges = (snap, out)
        return out

    def _table(self, image: Any, path: str) -> PackedTable | None:
        build_id = image.build_id()
        key = build_id or f"path:{path}"
        if key in self.tables:
            self.tables.move_to_end(key)
            return self.tables[key]
        if len(self.tables) >= TABLES_KEPT:
            self.tables.popitem(last=False)
        data = UnwindTable.cached_packed(image, build_id, path)
        table = self.tables[key] = PackedTable(data) if data else None
        return table

    def _place(self, address: int, index: int, pid: int) -> Any:
        """Where a frame is, as Symbolizer.unwound_stack places the kernel's
        frames (a caller at its return address - 1, the call): a file and its
        link-time address, named in samples(), at the end of the run with the
        kernel's stacks (naming here, while the run goes on, read python3's
        symbol table into the profiler's first seconds: ~1% of a CPU); an
        address in no file is named now (its mapping is the process's)."""
        located = self.symbolizer.users.locate(address - 1 if index else address, pid)
        if located is not None:
            _syms, vaddr, path = located
            return _InFile(path, vaddr, pid)
        return self.symbolizer.user(address, pid)

    def _named(self, places: tuple) -> list:
        """The frames of _place's places (unknown ones counted per sample, by
        samples(), not per lookup)."""
        before = self.symbolizer.unknown_frames
        try:
            return [self.symbolizer.module_frame(*f) if isinstance(f, _InFile) else f
                    for f in places]
        finally:
            self.symbolizer.unknown_frames = before

    def samples(self, loss: LossReport, **read_options: Any) -> list[Sample]:
        """Every copy so far as a sample (the ring drained first); those not
        unwound are counted in loss.unwind_fallback, as the kernel counts them."""
        self.rings.consume()
        self.resolve(final=True)
        key_type = self.prog["counts"].Key
        stack_map = self.prog["stack_traces"]
        out = []
        for (raw, places), n in self.unwound.items():
            frames = self._named(places)
            loss.unknown_frames += sum(1 for f in frames if f.unknown)
            out.append(sample_from_key(key_type.from_buffer_copy(raw), n, stack_map,
                                       self.symbolizer, user_frames=frames,
                                       **read_options))
        for raw, n in self.marked.items():
            out.append(sample_from_key(key_type.from_buffer_copy(raw), n, stack_map,
                                       self.symbolizer, **read_options))
        loss.unwind_fallback += sum(self.marked.values())
        loss.unwind_incomplete += self.incomplete
        return out

    def clear(self) -> None:
        """Forget the counted copies (a tool that empties its counts: cprofile)."""
        self.unwound.clear()
        self.marked.clear()
        self.incomplete = 0

    def summary(self) -> str:
        """One line for --verbose."""
        st = self.stats
        why = ", ".join(f"{n} {k}" for k, n in st.items() if k not in ("received", "unwound"))
        return (f"first samples: {st['received']} copied before their process was loaded, "
                f"{st['unwound']} unwound from the copy" + (f"; of them and not: {why}"
                                                            if why else ""))


class _InFile(NamedTuple):
    """A frame in a file, named at the end (Symbolizer.module_frame's arguments)."""
    path: str
    vaddr: int
    pid: int


class _LazyTable:
    """A mapping's table for unwind_python, read (FirstSamples._table) at
    its first lookup: no table is a NONE row, a frame-pointer step, as a
    range without one."""

    __slots__ = ("owner", "image", "path", "table", "read")

    def __init__(self, owner: FirstSamples, image: Any, path: str) -> None:
        self.owner, self.image, self.path = owner, image, path
        self.table: PackedTable | None = None
        self.read = False

    def find(self, vaddr: int) -> Any:
        if not self.read:
            self.table, self.read = self.owner._table(self.image, self.path), True
        return self.table.find(vaddr) if self.table is not None else None

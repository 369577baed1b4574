"""The user half of the in-kernel unwinder (bpf/ptk_unwind.h).

For each process the BPF side announces: its executable mappings become
modules (keyed by build id, so libc is compiled and written once for every
process), each module's rows (unwind_table.py) go into `unwind_rows` once,
and the process's mappings into its slot of `unwind_maps` + `proc_maps[pid]`.
Until then, and for a module that has no table, the BPF side falls back to
frame pointers. The kernel deletes `proc_maps[pid]` at exit and exec; slots
of gone processes are reused here.

Row space is kept for the processes that live: a module's rows stay while
any loaded process maps it (its `refs`), and after that until a new table
needs the room; then the tables no live process maps are evicted, least
recently used first (unwind_space.RowSpace). If that is not enough, a table
live processes map but no walk has looked up for LIVE_IDLE_S (the BPF side
stamps `sampled`) is evicted, least recently sampled first, and marked
NO_ROOM like a table that never fit: the BPF side counts the frame-pointer
steps it takes there (it gets rows again when room is free). A module's
entry changes before its rows are reused, and a grace period
(bpfsys.GracePeriod) passes before they are written: no walk reads another
module's rows. Evictions are in summary().

A stored frame is `module_id << 32 | link-time vaddr` (module_id 0: an
absolute address, bit 63 clear); `module(module_id)` says which file it is,
so frames are named after the process is gone. A module id is a slot
(1..PYTRACEKIT_UNWIND_MODULE_IDS, 65,535) and the slot's generation: when
the slots run out, those of modules no loaded process maps are reused under
the next generation, so stacks stored before keep naming their own module.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import signal
import struct
import time
from array import array
from dataclasses import dataclass
from typing import Any, Callable

from .unwind_space import RowSpace
from .unwind_table import ROW, UnwindTable, cached_rows_file

MODULE_SHIFT = 32
VADDR_MASK = (1 << MODULE_SHIFT) - 1
MODULE_BIT = 1 << 31   # of a module id (frame bit 63): user addresses never have it
MAX_SLOTS = 0xFFFF     # module id bits 0-15; bits 16-30: the slot's generation
MAX_GENERATION = 0x7FFF
LIVE_IDLE_S = 2        # a live table not sampled for this long (in 2^30 ns) may be evicted
MAX_MAPS = 64          # PTK_MAX_MAPS
MAP_JIT = 1            # ptk_proc_map.flags: anonymous executable code
MISS_INTERVAL_S = 0.1  # at most one re-snapshot per pid this often on unwind_miss
MISS_MAX_INTERVAL_S = 5.0   # ... backing off to this while its mappings stay the same
EH_FRAME_BYTES_PER_ROW = 7   # Debian's binaries: 6.4 (python3.11) to 5.4 (libc) bytes a row
WORK_BUDGET_S = 0.1    # loading per poll: ring buffers and naming go on meanwhile
NO_ROOM = 0xFFFFFFFF   # ptk_unwind_module.first_row: CFI without room (PTK_ROWS_NO_ROOM)
NO_ROOM_RETRY_S = 0.5  # a module left without room is tried again at most this often
RECLAIM_EVERY = 64     # slots given out between looks for gone processes' slots
HELD_CONTINUED = 2     # entry_held: PTK_HELD_CONTINUED
BPF_EXIST = 2          # bpf(2) update flag: only an existing element
# struct ptk_ustack.flags
TRUNCATED, INCOMPLETE, FP_STEPS, FALLBACK = 1, 2, 4, 8


@dataclass
class Module:
    """A file whose rows the unwinder loads, under one module id."""
    module_id: int
    path: str
    build_id: str
    key: str = ""        # in Unwinder.modules (build id, else path)
    first_row: int = 0
    n_rows: int = 0      # 0: no table in the kernel (frame-pointer steps there)
    refs: int = 0        # loaded processes that map it
    last_used: float = 0.0   # when a process last mapped it (eviction order)
    no_cfi: bool = False     # no table can be made: nothing to retry
    rows_needed: int = 0     # its table's size, once known
    no_room: bool = False    # marked NO_ROOM in unwind_modules (until written)
    retry_at: float = 0.0    # no room: not tried again before this
    written: int = 0         # monotonic_ns >> 30 when its rows were written


def _mapped(fd: int, size: int) -> "mmap.mmap | None":
    """The array map's values as writable memory (BPF_F_MMAPABLE), else None."""
    try:
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    except (OSError, ValueError):
        return None


def _stopped(pid: int) -> bool:
    """The process is stopped (state T in /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except (OSError, IndexError):
        return False


def split_frame(frame: int) -> tuple[int, int]:
    """(module_id, vaddr) of a stored frame; module_id 0: an absolute address."""
    if frame >> 63:
        return frame >> MODULE_SHIFT, frame & VADDR_MASK
    return 0, frame


def _env_int(name: str, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(os.environ.get(name, ""))))
    except ValueError:
        return default


def module_id_limit() -> int:
    """Module id slots (PYTRACEKIT_UNWIND_MODULE_IDS: fewer, for tests of their reuse)."""
    return _env_int("PYTRACEKIT_UNWIND_MODULE_IDS", MAX_SLOTS, 1, MAX_SLOTS)


def live_idle() -> int:
    """How long (2^30 ns units) a live table goes unsampled before it may be
    evicted (PYTRACEKIT_UNWIND_LIVE_IDLE: for tests)."""
    return _env_int("PYTRACEKIT_UNWIND_LIVE_IDLE", LIVE_IDLE_S, 1, 1 << 32)


class Unwinder:
    """Loads tables and mappings into one program's ptk_unwind.h maps."""

    # which announced pids to load (None: all); see stacktools._unwinder
    wanted: Callable[[int], bool] | None = None

    def __init__(self, prog: Any, users: Any) -> None:
        from .unwind_table import check_cache
        check_cache()   # before any table is read from it (one line if refused)
        self.users = users   # symbols.UserSymbols: maps snapshots and parsed binaries
        self.rows = prog["unwind_rows"]
        self.module_table = prog["unwind_modules"]
        self.proc_maps = prog["proc_maps"]
        self.hold_tree = prog["hold_tree"]
        self.entry_held = prog["entry_held"]
        self.holds_armed = prog["holds_armed"]
        self.maps = prog["unwind_maps"]
        self.row_capacity = self.rows.max_entries
        self.rows_memory = _mapped(self.rows.map_fd, self.row_capacity * ROW.size)
        self.slot_count = self.maps.max_entries // MAX_MAPS
        self.space = RowSpace(self.row_capacity)
        self.modules: dict[str, Module] = {}      # build id (or path) -> module
        # module id -> module: also retired ones (their slot reused), for naming
        self.by_id: dict[int, Module] = {}
        self.in_slot: dict[int, Module] = {}      # slot -> its module now
        self.slot_limit = module_id_limit()
        self.live_idle = live_idle()
        self.next_slot = 1
        self.free_ids: list[int] = []             # next module ids of retired slots
        self.loading: set[int] = set()            # ids of the process being loaded
        self.grace: Any = None                    # bpfsys.GracePeriod, once needed
        self.need_grace = False                   # rows given back since the last one
        self.restore_at = 0.0                     # restore() not before this
        self.slots: dict[int, int] = {}           # pid -> slot in unwind_maps
        self.free_slots = list(range(self.slot_count - 1, -1, -1))
        self.slots_given = 0
        self.reclaimed = False                    # _reclaim ran in this load (see _room)
        self.loaded: dict[int, tuple] = {}        # pid -> the mappings last written
        self.refs_of: dict[int, frozenset] = {}   # pid -> module ids it holds a ref on
        self.last_miss: dict[int, tuple[float, float]] = {}   # pid -> (when, interval)
        self.pending: dict[int, None] = {}        # pids to load, oldest first
        self.stopped: set[int] = set()            # held (see hold_command, continue_)
        self.entry_pid = 0                        # the command, armed to be held
        # called with the pid of a process stopped at its entry, before it goes on
        self.entry_hooks: list[Callable[[int], None]] = []
        self.holds = 0                            # continue_() calls (--verbose)
        self.stats = {"tables": 0, "rows": 0, "no_table": 0, "table_full": 0,
                      "too_many_maps": 0, "no_slot": 0, "compile_s": 0.0,
                      "evicted": 0, "evicted_rows": 0, "evicted_live": 0,
                      "evicted_live_rows": 0, "ids_reused": 0, "no_id": 0}

    def summary(self) -> str:
        """One line for --verbose: what was loaded and what was not."""
        st = self.stats
        in_use = self.row_capacity - self.space.free
        return (f"unwind: {st['tables']} module tables ({st['rows']} rows written, {in_use} of "
                f"{self.row_capacity} in use, compiled in {st['compile_s']:.2f} s), "
                f"{len(self.loaded)} processes; {st['evicted']} tables evicted "
                f"({st['evicted_rows']} rows) that no live process mapped, "
                f"{st['evicted_live']} ({st['evicted_live_rows']} rows) that live processes "
                f"map but no stack had used for {self.live_idle}+ s (frame-pointer steps there, "
                f"counted); {st['ids_reused']} module ids reused, {st['no_id']} modules "
                f"without an id; "
                f"without a table (frame-pointer steps): {st['no_table']} no CFI, "
                f"{st['table_full']} rows full; {st['too_many_maps']} processes over "
                f"{MAX_MAPS} mappings, {st['no_slot']} without a slot, "
                f"{st.get('errors', 0)} write errors; {self.holds} holds")

    # -- modules --------------------------------------------------------------
    def module(self, module_id: int) -> Module | None:
        return self.by_id.get(module_id)

    def _module_for(self, path: str, pid: int) -> tuple[Module, Any] | None:
        """The module of a mapped file (its table: `_with_tables`)."""
        syms = self.users.binary(path, pid)
        image = syms.image
        if image is None:
            return None
        key = image.build_id() or f"path:{path}"
        mod = self.modules.get(key)
        if mod is None:
            module_id = self._new_id()
            if module_id is None:
                self.stats["no_id"] += 1
                return None
            mod = Module(module_id, path, image.build_id(), key)
            self.modules[key] = mod
            self.by_id[module_id] = self.in_slot[module_id & MAX_SLOTS] = mod
        mod.last_used = time.monotonic()
        self.loading.add(mod.module_id)
        return mod, image

    def _new_id(self) -> int | None:
        """A module id: a new slot, else a slot retired from a module no loaded
        process maps (its next generation: frames stored under the old id
        still name the old module)."""
        if not self.free_ids and self.next_slot > self.slot_limit:
            self._retire_unmapped()
        if self.free_ids:
            return self.free_ids.pop()
        if self.next_slot > self.slot_limit:
            return None
        self.next_slot += 1
        return MODULE_BIT | (self.next_slot - 1)

    def _retire_unmapped(self) -> None:
        """Free the slots of the modules no loaded process maps, least recently
        used first (a sixteenth of the slots at once: one sort per batch)."""
        self._reclaim()
        idle = sorted((m for m in self.in_slot.values()
                       if not m.refs and m.module_id not in self.loading),
                      key=lambda m: m.last_used)
        for mod in idle[:max(1, self.slot_limit // 16)]:
            self._retire(mod)

    def _retire(self, mod: Module) -> None:
        """The module gives up its slot (kept in by_id to name stored frames):
        out of `unwind_modules` first, then its rows are free (after a grace
        period, _settle); a process mapping the file again gets a new module."""
        if mod.n_rows:
            self._evict(mod)
        elif mod.no_room:
            self._forget_entry(mod.module_id)
        mod.no_room = False
        self.modules.pop(mod.key, None)
        slot, generation = mod.module_id & MAX_SLOTS, (mod.module_id >> 16) & MAX_GENERATION
        del self.in_slot[slot]
        self.stats["ids_reused"] += 1
        if generation < MAX_GENERATION:   # else the slot is spent: ids are never repeated
            self.free_ids.append(MODULE_BIT | (generation + 1) << 16 | slot)

    def _forget_entry(self, module_id: int) -> None:
        try:
            del self.module_table[self.module_table.Key(module_id)]
        except KeyError:
            pass

    def _with_tables(self, found: "list[tuple[Module, Any]]") -> None:
        """Write the tables one process's modules lack (new, evicted, or no
        room before), never evicting one of them for another."""
        pinned = frozenset(mod.module_id for mod, _ in found)
        now = time.monotonic()
        self.reclaimed = False   # one look at every process for this one's tables
        for mod, image in found:
            if mod.n_rows == 0 and not mod.no_cfi and not (mod.no_room and now < mod.retry_at):
                self._write_table(mod, image, pinned)

    def _write_table(self, mod: Module, image: Any, pinned: "set[int] | frozenset",
                     live: bool = True) -> None:
        """`live`: tables live processes map (idle ones) may be evicted for it;
        else (restore) a module that still does not fit is left as it was."""
        needed = mod.rows_needed
        if not needed:
            eh_frame = image.section(".eh_frame")
            needed = eh_frame.size // EH_FRAME_BYTES_PER_ROW if eh_frame is not None else 0
        if needed > self.space.largest() and needed > self._room(pinned, live):
            if live:
                self._no_room(mod)   # known before spending seconds compiling it
            return
        # a cached table is read straight into the mapped rows (no bytes
        # object between: a third less CPU per table, ~24 tables for the first
        # processes a system-wide profile sees)
        cached = cached_rows_file(mod.build_id) if self.rows_memory is not None else None
        try:
            started = time.monotonic()
            data = None if cached else UnwindTable.cached_packed(image, mod.build_id, mod.path)
            self.stats["compile_s"] += time.monotonic() - started
            size = cached[1] if cached else len(data) if data is not None else 0
            if not size:
                mod.no_cfi = True
                self.stats["no_table"] += 1
                return
            n = mod.rows_needed = size // ROW.size
            first = self._take(n, pinned, live)
            if first is None:
                if live:
                    self._no_room(mod)
                return
            self._settle()   # no walk still reads these rows for the module that had them
            if cached and not self._read_rows(cached[0], first, size):
                data = UnwindTable.cached_packed(image, mod.build_id, mod.path)
                if data is None or len(data) != size:
                    self.space.give(first, n)
                    self.stats["errors"] = self.stats.get("errors", 0) + 1
                    return
            if data is not None and self.rows_memory is not None:
                self.rows_memory[first * ROW.size:(first + n) * ROW.size] = data
            elif data is not None:
                keys = (self.rows.Key * n).from_buffer_copy(array("I", range(first, first + n)))
                values = (self.rows.Leaf * n).from_buffer_copy(data)
                self.rows.items_update_batch(keys, values)
        finally:
            if cached:
                os.close(cached[0])
        mod.first_row, mod.n_rows, mod.no_room = first, n, False
        mod.written = time.monotonic_ns() >> 30
        key = self.module_table.Key(mod.module_id)
        self.module_table[key] = self.module_table.Leaf(first, n)
        self.stats["tables"] += 1
        self.stats["rows"] += n

    def _read_rows(self, fd: int, first: int, size: int) -> bool:
        """A cached table's file into the mapped rows from row `first`."""
        start = first * ROW.size
        with memoryview(self.rows_memory) as whole, whole[start:start + size] as rows:
            try:
                return os.preadv(fd, [rows], 0) == size
            except OSError:
                return False

    # -- row space ---------------------------------------------------------------
    def _evictable(self, pinned: "set[int] | frozenset") -> list[Module]:
        """Modules with rows that no loaded process maps, least recently used first."""
        return sorted((m for m in self.in_slot.values()
                       if m.n_rows and not m.refs and m.module_id not in pinned),
                      key=lambda m: m.last_used)

    def _idle_live(self, pinned: "set[int] | frozenset") -> list[Module]:
        """Tables live processes map that no walk has looked up for LIVE_IDLE_S,
        least recently sampled first; none when a grace period cannot be had."""
        if not self._can_settle():
            return []
        now = time.monotonic_ns() >> 30   # bpf_ktime_get_ns's clock (CLOCK_MONOTONIC)
        candidates = [mod for mod in self.in_slot.values()
                      if mod.n_rows and mod.refs and mod.module_id not in pinned]
        stamps = self._sampled() if candidates else {}
        idle = []
        for mod in candidates:
            sampled = stamps.get(mod.module_id)
            if sampled is None:
                continue
            used = max(sampled, mod.written)   # a table just written is in use too
            if now - used >= self.live_idle:
                idle.append((used, mod.last_used, mod))
        idle.sort(key=lambda t: t[:2])
        return [mod for *_, mod in idle]

    def _sampled(self) -> dict[int, int]:
        """module id -> its `sampled` stamp, every entry in one bpf(2) call
        where the kernel can (a lookup per module cost ~600 calls in 15 s of
        churn with the rows full), else a lookup per key."""
        try:
            items = list(self.module_table.items_lookup_batch())
        except Exception:   # BCC raises bare Exception; an older kernel: EINVAL
            items = list(self.module_table.items())
        return {getattr(k, "value", k): getattr(v, "sampled", 0) for k, v in items}

    def _room(self, pinned: "set[int] | frozenset", live: bool = False) -> int:
        """Rows free or freeable now (exited processes' modules reclaimed first)."""
        if not self.reclaimed:   # only when rows are short: one lookup per loaded
            self._reclaim()      # process, once per process loaded (or restore)
        room = self.space.free + sum(m.n_rows for m in self._evictable(pinned))
        return room + (sum(m.n_rows for m in self._idle_live(pinned)) if live else 0)

    def _take(self, n: int, pinned: "set[int] | frozenset", live: bool = False) -> int | None:
        """The first of n contiguous rows, evicting unmapped modules' tables
        (least recently used first), then with `live` idle live ones (least
        recently sampled first), until a run of n is free; None if none."""
        first = self.space.take(n)
        if first is not None:
            return first
        if self._room(pinned) >= n:
            for victim in self._evictable(pinned):
                self._evict(victim)
                first = self.space.take(n)
                if first is not None:
                    return first
        if not live or self._room(pinned, live=True) < n:
            return None
        for victim in self._idle_live(pinned):
            self._evict(victim, live=True)
            first = self.space.take(n)
            if first is not None:
                return first
        return None

    def _evict(self, mod: Module, live: bool = False) -> None:
        """Drop a table: out of `unwind_modules` first (the BPF side no longer
        reads its rows; a live one is marked NO_ROOM: its frame-pointer steps
        are counted), then its rows are free, written again only after a
        grace period (_settle)."""
        if live:
            self._mark_no_room(mod)
            self.stats["evicted_live"] += 1
            self.stats["evicted_live_rows"] += mod.n_rows
        else:
            self._forget_entry(mod.module_id)
            self.stats["evicted"] += 1
            self.stats["evicted_rows"] += mod.n_rows
        self.space.give(mod.first_row, mod.n_rows)
        self.need_grace = True
        mod.first_row, mod.n_rows = 0, 0

    def _can_settle(self) -> bool:
        if self.grace is None:
            from ..kernel.bpfsys import GracePeriod
            try:
                self.grace = GracePeriod()
            except (OSError, KeyError):   # (KeyError: no syscall number here)
                self.grace = False
        return bool(self.grace)

    def _settle(self) -> None:
        """Rows given back are about to be written: wait until no walk that
        could have read the old module entry still runs."""
        if not self.need_grace:
            return
        if self._can_settle():
            try:
                self.grace.wait()
            except OSError:
                time.sleep(0.05)   # far longer than a walk (microseconds)
        else:
            time.sleep(0.05)
        self.need_grace = False

    def restore(self) -> None:
        """Tables evicted from live processes (or left without room) get rows
        again when room is free, without evicting another live table."""
        now = time.monotonic()
        waiting = [m for m in self.in_slot.values()
                   if m.no_room and m.refs and now >= m.retry_at]
        if not waiting:
            return
        # (exits are noticed elsewhere: no look at every process here)
        self.reclaimed = False
        spare = self.space.free + sum(m.n_rows for m in self.in_slot.values()
                                      if m.n_rows and not m.refs)
        for mod in waiting:
            if mod.rows_needed <= spare:
                syms = self.users.binary(mod.path, 0)
                if syms.image is not None:
                    self._write_table(mod, syms.image, frozenset({mod.module_id}), live=False)

    def _no_room(self, mod: Module) -> None:
        """A module with CFI but no room: the BPF side takes frame-pointer
        steps in it and counts them (unwind_fp_steps), never silently."""
        mod.retry_at = time.monotonic() + NO_ROOM_RETRY_S
        if not mod.no_room:
            self.stats["table_full"] += 1
            self._mark_no_room(mod)

    def _mark_no_room(self, mod: Module) -> None:
        mod.no_room = True
        mod.retry_at = time.monotonic() + NO_ROOM_RETRY_S
        key = self.module_table.Key(mod.module_id)
        self.module_table[key] = self.module_table.Leaf(NO_ROOM, 0)

    def _hold_refs(self, pid: int, module_ids: frozenset) -> None:
        """pid now maps exactly `module_ids` (a reference on each)."""
        old = self.refs_of.get(pid, frozenset())
        now = time.monotonic()
        for module_id in module_ids - old:
            self.by_id[module_id].refs += 1
        for module_id in old - module_ids:
            mod = self.by_id[module_id]
            mod.refs -= 1
            mod.last_used = now
            if mod.no_room and not mod.refs:   # its mark goes (tried again when mapped)
                mod.no_room = False
                self._forget_entry(module_id)
        if module_ids:
            self.refs_of[pid] = module_ids
        else:
            self.refs_of.pop(pid, None)

    def preload(self, paths: list[str]) -> None:
        """Compile and write these files' tables now (a command about to start)."""
        self.loading = set()
        self._with_tables([f for f in (self._module_for(path, 0) for path in paths) if f])

    # -- processes --------------------------------------------------------------
    def request(self, pid: int) -> None:
        """Load pid (again) at the next work(): compiling a new module's table
        can take a second, too long inside a ring buffer callback. Pids that
        `wanted` refuses are left to the frame-pointer fallback."""
        if self.wanted is None or self.wanted(pid):
            self.pending[pid] = None

    def work(self, budget_s: float = WORK_BUDGET_S) -> None:
        """Load pending pids, oldest first, for about budget_s."""
        end = time.monotonic() + budget_s
        while self.pending and time.monotonic() < end:
            pid = next(iter(self.pending))
            del self.pending[pid]
            self.load(pid)
        if time.monotonic() >= self.restore_at and time.monotonic() < end:
            self.restore_at = time.monotonic() + NO_ROOM_RETRY_S
            try:
                self.restore()
            except Exception:   # BCC raises bare Exception when bpf(2) refuses a write
                self.stats["errors"] = self.stats.get("errors", 0) + 1

    def load(self, pid: int) -> bool:
        """Write pid's mappings (from its latest snapshot) if they changed."""
        try:
            return self._load(pid)
        except Exception:   # BCC raises bare Exception when bpf(2) refuses a write
            self.stats["errors"] = self.stats.get("errors", 0) + 1
            return False

    def _load(self, pid: int) -> bool:
        snap = self.users.processes.get(pid)
        # (an exited process's entry would only be left behind)
        if snap is None or not snap.mappings or not self.users.alive(pid):
            return False
        self.loading = set()   # its modules keep their ids while it is loaded
        modules = {m.path: self._module_for(m.path, pid) for m in snap.mappings
                   if m.path.startswith("/") or m.path == "[vdso]"}
        self._with_tables([found for found in modules.values() if found is not None])
        entries = []
        for m in snap.mappings:
            module_id, bias, flags = 0, 0, 0
            if m.path.startswith("/") or m.path == "[vdso]":
                found = modules[m.path]
                if found is not None:
                    mod, image = found
                    vaddr = image.vaddr_of_offset(m.offset)
                    # (a frame keeps 32 bits of vaddr: a module linked higher
                    # keeps absolute addresses, named through the maps)
                    if vaddr is not None and vaddr + (m.end - m.start) <= 1 << 32:
                        module_id, bias = mod.module_id, m.start - vaddr
            else:
                flags = MAP_JIT
            entries.append((m.start, m.end, bias, module_id, flags))
        if len(entries) > MAX_MAPS:
            self.stats["too_many_maps"] += 1
            entries = entries[:MAX_MAPS]
        entries = tuple(entries)
        if self.loaded.get(pid) == entries and self._present(pid):
            return True
        slot = self._slot(pid)
        if slot is None:
            self.stats["no_slot"] += 1
            return False
        first = slot * MAX_MAPS
        n = len(entries)
        keys = (self.maps.Key * n)(*(self.maps.Key(first + i) for i in range(n)))
        values = (self.maps.Leaf * n)(*(self.maps.Leaf(*e) for e in entries))
        self.maps.items_update_batch(keys, values)
        self.proc_maps[self.proc_maps.Key(pid)] = self.proc_maps.Leaf(first, n, 0, 0)
        self.loaded[pid] = entries
        self._hold_refs(pid, frozenset(e[3] for e in entries if e[3]))
        return True

    def _present(self, pid: int) -> bool:
        try:
            self.proc_maps[self.proc_maps.Key(pid)]
        except KeyError:
            return False
        return True

    def _slot(self, pid: int) -> int | None:
        slot = self.slots.get(pid)
        if slot is not None:
            return slot
        # not only when full: what is kept here is per live process, not per
        # process seen (a continuous profiler sees thousands)
        if not self.free_slots or self.slots_given % RECLAIM_EVERY == 0:
            self._reclaim()
        if not self.free_slots:
            return None
        self.slots_given += 1
        slot = self.slots[pid] = self.free_slots.pop()
        return slot

    def _reclaim(self) -> None:
        """Slots and module references of processes the kernel already dropped
        (exit, exec: reloaded when announced again) or that are gone."""
        self.reclaimed = True
        for pid in list(self.slots):
            if not self._present(pid) or not os.path.exists(f"/proc/{pid}"):
                # reused last: a forked child not loaded yet may still read it
                self.free_slots.insert(0, self.slots.pop(pid))
                self.loaded.pop(pid, None)
                self.last_miss.pop(pid, None)
                self._hold_refs(pid, frozenset())

    def hold_command(self, prog: Any, executable: str, pid: int) -> None:
        """Have the held command, and every program its process tree runs,
        stop once its libraries are mapped (ld.so) or at its entry point (a
        static executable) until continue_() has loaded its mappings."""
        self.entry_pid = pid
        self.holds_armed[0] = self.holds_armed.Leaf(1)
        self.hold_tree[self.hold_tree.Key(pid)] = self.hold_tree.Leaf(1)
        ldso = hold_in_ldso(prog)
        interp = interpreter(executable) if executable else ""
        if ldso and interp and os.path.realpath(interp) == ldso:
            return
        entry = entry_point(executable) if executable else 0
        if entry:   # static, or another ld.so than ours: its first program at least
            prog.attach_uprobe(executable, "ptk_stop_at_entry", address=entry)

    def continue_(self, pid: int, first: bool = True) -> None:
        """A process held (its libraries mapped): load it now, then let it
        run; `first`: the first hold of its program (the hooks run then)."""
        self.stopped.add(pid)
        self.holds += 1
        try:
            self.users.refresh(pid)
            self.loaded.pop(pid, None)
            self.load(pid)
            for hook in self.entry_hooks if first else ():
                hook(pid)
        finally:
            self.entry_pid = 0 if pid == self.entry_pid else self.entry_pid
            self.release_stopped()

    def release_stopped(self) -> None:
        """SIGCONT every process stopped at its entry (also the command's own
        pid when the stop was armed: its announcement may never have been read)."""
        if self.entry_pid:
            self.stopped.add(self.entry_pid)
            self.entry_pid = 0
        for pid in list(self.stopped):
            self.stopped.discard(pid)
            self._mark_continued(pid)
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass

    def _mark_continued(self, pid: int) -> None:
        """Before the SIGCONT: its next switch-in ends the hold's window for
        the blocked-time tools (ptk_held_switched_in). Only an entry the hold
        made (BPF_EXIST): one made here would hide the program's next block."""
        key = self.entry_held.Key(pid)
        leaf = self.entry_held.Leaf(HELD_CONTINUED)
        from bcc import libbcc
        libbcc.lib.bpf_update_elem(self.entry_held.map_fd, ctypes.byref(key),
                                  ctypes.byref(leaf), BPF_EXIST)

    def close(self) -> None:
        """The end of the run: every hold released (release_all), and the
        rows' mapping unmapped (Python's mmap keeps a dup of the map's fd)."""
        self.release_all()
        if self.grace:
            self.grace.close()
        if self.rows_memory is not None:
            self.rows_memory.close()
            self.rows_memory = None

    def release_all(self) -> None:
        """On the way out: no more holds (the tree is emptied), and every
        process a hold stopped that nobody continued (held after the last
        poll: an exec or dlopen while the tool read its maps) goes on."""
        self.release_stopped()
        try:
            self.hold_tree.clear()
            held = [k.value for k in self.entry_held.keys()]
        except Exception:   # BCC raises bare Exception when bpf(2) refuses
            return
        for pid in held:
            if _stopped(pid):
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    def on_miss(self, pid: int) -> bool:
        """A pc outside pid's known mappings (dlopen since): snapshot again,
        at most once per MISS_INTERVAL_S; True when a reload was requested."""
        now = time.monotonic()
        last, interval = self.last_miss.get(pid, (0.0, MISS_INTERVAL_S))
        if now - last < interval:
            return False
        before = self.users.processes.get(pid)
        self.users.refresh(pid)
        after = self.users.processes.get(pid)
        same = before is not None and after is not None and before.mappings == after.mappings
        # a return address that is garbage (code without CFI or frame pointers)
        # misses every time: look again less and less often
        self.last_miss[pid] = (now, min(interval * 2, MISS_MAX_INTERVAL_S) if same
                               else MISS_INTERVAL_S)
        self.loaded.pop(pid, None)   # rewrite: this also clears miss_sent
        self.request(pid)
        return True


def setup_unwinder(prog: Any, symbolizer: Any, *, command: tuple[str, ...] = (),
                   command_pid: int = 0, pids: list[int] = ()) -> "Unwinder | None":
    """The in-kernel unwinder's user half for a program that has one
    (CFI_UNWIND), set up before its probes fire: a held command's program and
    the C library are loaded before it starts (and it is stopped at its entry
    until its own mappings are: `stop_command_at_entry`), the given processes
    now, so their first stacks already unwind with tables. Names the unwound
    stacks through `symbolizer` (symbols.Symbolizer). None: no unwinder."""
    try:
        prog["proc_maps"]
    except KeyError:
        return None
    unwinder = Unwinder(prog, symbolizer.users)
    if command:
        modules = likely_modules(command[0])
        unwinder.preload(modules)
        if command_pid:
            unwinder.hold_command(prog, modules[0] if modules else "", command_pid)
    else:
        for pid in dict.fromkeys(_tgid(p) for p in pids):   # -t: its process's maps
            symbolizer.remember(pid)
            unwinder.load(pid)
    symbolizer.unwinder, symbolizer.ustacks = unwinder, prog["ustacks"]
    return unwinder


def _tgid(tid: int) -> int:
    """The process of a thread id (the unwinder's maps are per process)."""
    try:
        with open(f"/proc/{tid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return tid


def hold_in_ldso(prog: Any) -> str:
    """Attach ptk_stop_in_ldso to our dynamic loader's _dl_debug_state (the
    debugger's hook, called with r_debug.r_state RT_CONSISTENT once a
    program's libraries are mapped, and after each dlopen); its path, or ""
    when it has no such symbols."""
    from .elfsyms import load_image
    ldso = next((p for p in likely_modules("") if os.path.basename(p).startswith("ld-linux")), "")
    image = load_image(ldso) if ldso else None
    if image is None:
        return ""
    syms = image.symbols({"_dl_debug_state", "_r_debug"})
    if "_dl_debug_state" not in syms or "_r_debug" not in syms:
        return ""
    func, r_debug = syms["_dl_debug_state"][0], syms["_r_debug"][0]
    table = prog["ldso_r_state"]
    r_state = r_debug + 24   # struct r_debug: int, link_map *, r_brk, then r_state
    table[table.Key(0)] = table.Leaf(r_state - (func & ~0xFFF))
    prog.attach_uprobe(ldso, "ptk_stop_in_ldso", address=func)
    return ldso


def read_miss(data: int) -> int:
    """The pid of a struct ptk_unwind_miss record."""
    return ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32)).contents.value


def likely_modules(program: str) -> list[str]:
    """A command's executable and the C library and dynamic loader this
    process uses (nearly every program on the system maps the same ones)."""
    import shutil
    paths = []
    exe = program if "/" in program else shutil.which(program)
    if exe:
        paths.append(os.path.realpath(exe))
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(None, 5)[-1]
                name = os.path.basename(path)
                if (name.startswith("libc.so") or name.startswith("ld-linux")) \
                        and path not in paths:
                    paths.append(path)
    except OSError:
        pass
    return paths


def interpreter(path: str) -> str:
    """PT_INTERP of an ELF executable ("" for a static one or anything else)."""
    from .elfsyms import load_image
    image = load_image(path)
    if image is None:
        return ""
    for seg in image.program_headers:
        if seg.type == 3:   # PT_INTERP
            raw = bytes(image.data[seg.offset:seg.offset + seg.filesz])
            return raw.rstrip(b"\0").decode(errors="replace")
    return ""


def entry_point(path: str) -> int:
    """e_entry of an ELF executable (0 for anything else: a script)."""
    try:
        with open(path, "rb") as f:
            head = f.read(0x20)
    except OSError:
        return 0
    if len(head) < 0x20 or head[:4] != b"\x7fELF" or head[4] != 2:
        return 0
    return struct.unpack_from("<Q", head, 0x18)[0]

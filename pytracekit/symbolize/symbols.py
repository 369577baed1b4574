"""Turning stack ids and addresses into frames.

Kernel addresses are named from kallsyms' table (kallsyms.py: kept per boot in
the cache), and what it leaves (BPF programs) by BCC's read. User addresses are resolved
here, without BCC, so that:
- a process that exits during the run is still resolved: `remember(pid)`
  snapshots its /proc/PID/maps while it lives (tools call it when the BPF
  side reports a new pid), and binaries are read from disk by path;
- symbols come from .symtab/.dynsym, .gnu_debugdata, build-id and debuglink
  debug files (see elfsyms.py), and JIT code from /tmp/perf-PID.map;
- lookups are cached per (pid, address) and symbol tables per binary, so
  thousands of unique stacks take milliseconds; both caches are bounded LRUs,
  and exited processes' maps are dropped once DEAD_PROCESSES_KEPT newer ones
  exited (a long run over process churn stays flat in memory and fds).
BCC's per-process resolver is not used: it holds every module's symbols and
fds per process and never frees them. A live process whose address is in no
mapping is snapshot again (at most once per RESNAPSHOT_S). A frame no symbol
names keeps its module and address: `liblzma.so.5.4.1+0x1692b` (link-time address), `[anon]+0xADDR`,
`[unknown]+0xADDR` (no mapping at all), `[kernel.kallsyms]+0xADDR` or
`MODULE.ko+0xOFF`; such frames are counted in `unknown_frames`.
"""
from __future__ import annotations

import bisect
import ctypes
import os
import stat
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from . import kallsyms
from .elfsyms import ElfSymbols
from ..model import Frame, ModuleInfo, unnamed
from .unwind import cfi_of, recover_frames

if TYPE_CHECKING:
    import threading

UNKNOWN = "[unknown]"
# The root of a user stack that the kernel's frame-pointer walk gave while the
# in-kernel unwinder had no tables for its process yet (a process it did not
# start, in its first moments): perhaps not whole, so never shown as if it
# were (also counted: LossReport.unwind_fallback).
NOT_LOADED = Frame("[frame pointers: process not loaded yet]", "marker")
PERF_MAP_DIR = os.environ.get("PYTRACEKIT_PERF_MAP_DIR", "/tmp")
PERF_MAP_LIMIT = 64 << 20     # bytes of a perf map read at most
FRAME_CACHE_ENTRIES = 32_768          # (pid, address) -> Frame (about 400 B each)
BINARY_CACHE_ENTRIES = 256            # parsed symbol tables kept ...
BINARY_CACHE_SYMBOLS = 4_000_000      # ... and their symbols in all (about 150 B each)
DEAD_PROCESSES_KEPT = 1024            # exited processes whose maps are kept
SWEEP_EVERY = 64                      # new pids between looks for exited ones
RESNAPSHOT_S = 1.0                    # a live pid's maps re-read at most this often
PERF_MAP_RECHECK_S = 0.2              # a pid's perf map looked at again at most this often
# BCC reads /proc/kallsyms once per process and names an address loaded since
# (another tool's BPF program) by the symbol below it: far below (an offset past
# any function's size), or a BPF program loaded before it, just below. So a name
# with such an offset, and a BPF program's name while the set of loaded programs
# differs from the one BCC's read saw, are checked by reading kallsyms again, at
# most this often (a read costs tens of ms); else the address stays unnamed.
STALE_KERNEL_OFFSET = 1 << 20
BCC_KALLSYMS_REREAD_S = 60.0   # each read also moves ~13 MB through malloc
# the loaded BPF programs (bpfsys.prog_ids) when BCC last read kallsyms at our
# asking; None: BCC's first read was not ours, its programs are not known
_bcc_kallsyms_programs: list[tuple[int, ...] | None] = [None]
_bcc_kallsyms_reread_at = [float("-inf")]   # BCC's kernel symbols are per process


def _drop_bcc_kernel_symbols() -> None:
    """Make BCC read kallsyms again at its next kernel lookup. Its Python object
    never frees the C++ table (bcc.SymbolCache has no destructor): ~10 MB of RSS
    per read was left behind, each time the loaded BPF programs changed."""
    from bcc import BPF, libbcc
    cache = BPF._sym_caches.pop(-1, None)   # pylint: disable=protected-access  # BCC's kernel cache
    if cache is not None:
        libbcc.lib.bcc_free_symcache(cache.cache, -1)


class Lru:
    """A dict bounded by entry count and by the sum of `weight(value)`;
    the least recently used entries go first."""

    def __init__(self, entries: int, budget: int = 0,
                 weight: Callable[[Any], int] = lambda _v: 1) -> None:
        self.entries, self.budget, self.weight = entries, budget, weight
        self.data: OrderedDict = OrderedDict()
        self.weights: dict = {}   # as weighed when set (a value may grow later: set it again)
        self.total = 0

    def clear(self) -> None:
        self.data.clear()
        self.weights.clear()
        self.total = 0

    def get(self, key: Any) -> Any:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        if self.data.pop(key, None) is not None:
            self.total -= self.weights.pop(key)
        self.data[key] = value
        weight = self.weights[key] = self.weight(value)
        self.total += weight
        while len(self.data) > 1 and (len(self.data) > self.entries or
                                      (self.budget and self.total > self.budget)):
            gone, _ = self.data.popitem(last=False)
            self.total -= self.weights.pop(gone)

    def __contains__(self, key: Any) -> bool:
        return key in self.data

    def __len__(self) -> int:
        return len(self.data)

    def pop(self, key: Any, default: Any = None) -> Any:
        value = self.data.pop(key, None)
        if value is None:
            return default
        self.total -= self.weights.pop(key)
        return value


@dataclass(frozen=True)
class Mapping:
    """One executable mapping of /proc/PID/maps."""
    start: int
    end: int
    offset: int
    path: str


def read_proc(path: str, limit: int = 1 << 24) -> bytes:
    """A /proc file's contents (up to `limit` bytes) with bare open/read/close:
    Python's open() adds an fstat, an ioctl and an lseek to each, and a
    system-wide profiler reads several of these per new process."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_all(fd, limit)
    finally:
        os.close(fd)


def read_proc_and_owner(path: str, limit: int = 1 << 24) -> tuple[bytes, int]:
    """read_proc, and the file's owner: a /proc/PID file is owned as /proc/PID
    is (process_uid), and fstat costs no lookup of the path again."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _read_all(fd, limit), os.fstat(fd).st_uid
    finally:
        os.close(fd)


def _read_all(fd: int, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit:
        chunk = os.read(fd, min(65536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# A process's sizes are read at most once per VM_SIZES_FRESH_S: a new
# process's settle check, the snapshot it makes and its Python check come in
# the same batch, and each /proc open is a path walk (statm reads were ~13%
# of a system-wide profile's own CPU under process churn). A value that old is
# still read before any maps read after it, as ProcessMaps.snapshot needs.
VM_SIZES_FRESH_S = 0.005
GONE = (-1, -1)
_vm_sizes_read: dict[int, tuple[float, tuple[int, int]]] = {}   # pid -> (when, sizes)


def vm_sizes_of(pid: int) -> tuple[int, int]:
    """(its address space's size, its executable mappings' size) in kB, from
    /proc/PID/status (VmSize; VmExe + VmLib, the kernel's exec_vm); GONE when
    gone. Mapping a library or JIT region, or making one executable, changes the
    second; malloc's arenas change only the first. Reading all the maps again
    costs far more."""
    now = time.monotonic()
    seen = _vm_sizes_read.get(pid)
    if seen is not None and now - seen[0] < VM_SIZES_FRESH_S:
        return seen[1]
    try:
        status = read_proc(f"/proc/{pid}/status", 4096)
        sizes = (_status_kb(status, b"\nVmSize:"),
                 _status_kb(status, b"\nVmExe:") + _status_kb(status, b"\nVmLib:"))
    except (OSError, ValueError):
        sizes = GONE   # (a kernel thread, or a zombie: no sizes, no user stacks)
    if len(_vm_sizes_read) >= 256:
        for old in [p for p, (at, _) in _vm_sizes_read.items() if now - at >= VM_SIZES_FRESH_S]:
            del _vm_sizes_read[old]
    _vm_sizes_read[pid] = (now, sizes)
    return sizes


def _status_kb(status: bytes, field: bytes) -> int:
    """A `Field:   123 kB` line's number; ValueError when absent."""
    at = status.index(field) + len(field)
    return int(status[at:status.index(b"kB", at)])


def exec_size_of(pid: int) -> int:
    """The size of a process's executable mappings (kB); -1 when gone."""
    return vm_sizes_of(pid)[1]


@dataclass
class ProcessMaps:
    """The executable mappings of one process, as /proc/PID/maps showed them."""

    pid: int
    mappings: list[Mapping] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    exe_inode: int = 0
    uid: int | None = None     # effective uid: who may own its perf map
    exec_size: int = -1        # its executable mappings' size when read (exec_size_of)
    # path -> start of its offset-0 mapping, for files whose name says python:
    # the Python check's candidates (python/runtime.py), without reading the maps again
    python_files: dict[str, int] = field(default_factory=dict)

    @classmethod
    def snapshot(cls, pid: int) -> "ProcessMaps | None":
        # before the maps: a change in between shows next time
        exec_size = exec_size_of(pid)
        try:
            # surrogateescape: a non-UTF-8 path stays the path it names
            raw, uid = read_proc_and_owner(f"/proc/{pid}/maps")
            lines = raw.decode(errors="surrogateescape").splitlines()
            inode = os.stat(f"/proc/{pid}/exe").st_ino
        except OSError:
            return None
        maps = []
        python_files: dict[str, int] = {}
        for line in lines:
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            path = parts[5] if len(parts) > 5 else ""
            if _python_file_start(path, parts[2]) and path not in python_files:
                python_files[path] = int(parts[0].split("-")[0], 16)
            if "x" not in parts[1]:
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            maps.append(Mapping(lo, hi, int(parts[2], 16), path))
        maps.sort(key=lambda m: m.start)
        return cls(pid, maps, [m.start for m in maps], inode, uid, exec_size, python_files)

    def find(self, address: int) -> Mapping | None:
        i = bisect.bisect_right(self.starts, address) - 1
        if i >= 0 and address < self.mappings[i].end:
            return self.mappings[i]
        return None

    def stale(self) -> bool:
        """True when the live process now runs another image (it exec'd)."""
        try:
            return os.stat(f"/proc/{self.pid}/exe").st_ino != self.exe_inode
        except OSError:
            return False


def _python_file_start(path: str, offset: str) -> bool:
    """A maps line (its path and hex offset) that ProcessMaps.python_files keeps:
    the offset-0 mapping of a file whose name says python."""
    return "python" in path and int(offset, 16) == 0


def python_files_of(pid: int) -> dict[str, int]:
    """ProcessMaps.python_files, read from the maps now (OSError when gone)."""
    found: dict[str, int] = {}
    for line in read_proc(f"/proc/{pid}/maps").decode(errors="surrogateescape").splitlines():
        parts = line.split(None, 5)
        if len(parts) == 6 and _python_file_start(parts[5], parts[2]):
            found.setdefault(parts[5], int(parts[0].split("-")[0], 16))
    return found


def process_uid(pid: int) -> int | None:
    """Who may own the process's perf map: the owner of /proc/PID, which is its
    effective uid, or root when it is not dumpable (a setuid program: then
    only root's file is read). None once it is gone. One stat: `status` is a
    2 KB text to make and parse, and a system-wide profiler asks this of every
    process it samples."""
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def open_perf_map(path: str, uid: int | None) -> int | None:
    """An fd for a perf map worth reading, else None. /tmp is anyone's: like
    perf, only a regular file owned by the process's user or root is read.
    O_NOFOLLOW: no link; O_NONBLOCK: opening a planted FIFO does not wait
    for a writer (fstat then refuses it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_uid in (0, os.geteuid(), uid):
        return fd
    os.close(fd)
    return None


@dataclass
class PerfMap:
    """/tmp/perf-PID.map: `START SIZE name` per JIT-compiled function (hex).
    Only its first PERF_MAP_LIMIT bytes are read: entries past them stay
    unnamed ([unknown])."""

    path: str
    stamp: tuple[float, int] = (0.0, -1)
    checked: float = float("-inf")   # when UserSymbols.perf_map last refreshed it
    starts: list[int] = field(default_factory=list)
    entries: list[tuple[int, int, str]] = field(default_factory=list)

    def refresh(self, uid: int | None = None) -> bool:
        """Re-read the map if it changed; `uid`: the process's (see open_perf_map)."""
        fd = open_perf_map(self.path, uid)
        if fd is None:
            if os.path.lexists(self.path):        # replaced by something untrusted
                self.entries, self.starts, self.stamp = [], [], (0.0, -1)
            return bool(self.entries)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if (st.st_mtime, st.st_size) == self.stamp:
                return True
            data = f.read(PERF_MAP_LIMIT)
        if len(data) == PERF_MAP_LIMIT:
            data = data[:data.rfind(b"\n") + 1]
        entries = []
        for line in data.decode(errors="replace").splitlines():
            parts = line.split(" ", 2)
            if len(parts) == 3:
                try:
                    entries.append((int(parts[0], 16), int(parts[1], 16), parts[2]))
                except ValueError:
                    continue
        entries.sort()
        self.entries, self.starts = entries, [e[0] for e in entries]
        self.stamp = (st.st_mtime, st.st_size)
        return True

    def lookup(self, address: int) -> str | None:
        i = bisect.bisect_right(self.starts, address) - 1
        # JITs append replacements; the last entry covering the address wins.
        while i >= 0:
            start, size, name = self.entries[i]
            if start <= address < start + size:
                return name
            if address - start > 1 << 24:
                break
            i -= 1
        return None


class _Demangler:
    """C++/Rust(legacy) names through libstdc++'s __cxa_demangle, if present;
    looked up at the first such name, not at every start (find_library runs ldconfig)."""

    def __init__(self) -> None:
        self._fn = None
        self._looked_up = False

    def _look_up(self) -> None:
        try:
            lib = ctypes.CDLL("libstdc++.so.6")
            fn = getattr(lib, "__cxa_demangle")  # (not lib.__x: name mangling)
            fn.restype = ctypes.c_void_p
            fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                           ctypes.POINTER(ctypes.c_int)]
            from ctypes.util import find_library
            self._free = ctypes.CDLL(find_library("c")).free
            self._free.argtypes = [ctypes.c_void_p]
            self._fn = fn    # last: another thread may be demangling
        except (OSError, AttributeError):
            self._fn = None
        self._looked_up = True

    def __call__(self, name: str) -> str:
        if not name.startswith("_Z"):
            return name
        if not self._looked_up:
            self._look_up()
        if self._fn is None:
            return name
        status = ctypes.c_int(0)
        ptr = self._fn(name.encode(), None, None, ctypes.byref(status))
        if not ptr or status.value != 0:
            return name
        try:
            return ctypes.string_at(ptr).decode(errors="replace")
        finally:
            self._free(ptr)


_demangle = _Demangler()


def _own_vdso() -> bytes:
    """The vDSO image is the same in every process: read ours from memory."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                if line.rstrip().endswith("[vdso]"):
                    lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
                    return ctypes.string_at(lo, hi - lo)
    except OSError:
        pass
    return b""


class UserSymbols:
    """Process maps snapshots + per-binary symbol tables + perf maps."""

    def __init__(self) -> None:
        self.processes: dict[int, ProcessMaps | None] = {}
        self.binaries = Lru(BINARY_CACHE_ENTRIES, BINARY_CACHE_SYMBOLS,
                            lambda syms: len(syms.names) + 1 if syms.loaded else 1)
        self.perf_maps: dict[int, PerfMap] = {}
        self._rechecked: set[int] = set()   # resolve(): looked again once
        self._resnapshot: dict[int, float] = {}   # mapping_of(): when last re-read
        self.dead: OrderedDict[int, None] = OrderedDict()   # exited, oldest first
        self._new_since_sweep = 0

    def remember(self, pid: int) -> None:
        """Snapshot a process's maps now, while it exists."""
        if pid > 0 and self.processes.get(pid) is None:
            self.processes[pid] = ProcessMaps.snapshot(pid)
            self._new_since_sweep += 1
            if self._new_since_sweep >= SWEEP_EVERY:
                self.sweep()

    def forget(self, pid: int) -> None:
        self.processes.pop(pid, None)
        self.dead.pop(pid, None)
        self._rechecked.discard(pid)
        self._resnapshot.pop(pid, None)

    def sweep(self) -> None:
        """Note which processes exited; keep the maps of the DEAD_PROCESSES_KEPT
        most recently used of them (their stacks may still be read), drop the rest."""
        self._new_since_sweep = 0
        for pid in list(self.processes):
            if pid not in self.dead and not os.path.exists(f"/proc/{pid}"):
                self.dead[pid] = None
                self.perf_maps.pop(pid, None)
                self._rechecked.discard(pid)
                self._resnapshot.pop(pid, None)
        while len(self.dead) > DEAD_PROCESSES_KEPT:
            pid, _ = self.dead.popitem(last=False)
            self.processes.pop(pid, None)
            # naming a dead process's frame looks for its perf map again
            self.perf_maps.pop(pid, None)
            self._rechecked.discard(pid)
            self._resnapshot.pop(pid, None)

    def alive(self, pid: int) -> bool:
        """Is pid still there? Its sizes (vm_sizes_of) are read at most once per
        VM_SIZES_FRESH_S, so right after its snapshot this is no lookup in /proc."""
        return vm_sizes_of(pid) != GONE

    def maps_changed(self, pid: int) -> bool:
        """Might pid's executable mappings differ from its snapshot? Their
        size is compared (exec_size_of); False when gone."""
        maps = self.processes.get(pid)
        if maps is None:
            return True
        size = exec_size_of(pid)
        return size != -1 and size != maps.exec_size

    def refresh(self, pid: int) -> None:
        """A new snapshot if the process still lives; else keep the last one."""
        fresh = ProcessMaps.snapshot(pid)
        if fresh is not None:
            self.processes[pid] = fresh

    def binary(self, path: str, pid: int = 0) -> ElfSymbols:
        syms = self.binaries.get(path)
        if syms is not None:
            # get() made it the newest; set again only when its symbols were
            # loaded since (so their weight counts against the budget)
            if self.binaries.weights.get(path) != self.binaries.weight(syms):
                self.binaries[path] = syms
            return syms
        if path == "[vdso]":
            syms = ElfSymbols.load(path, _own_vdso())
        else:
            # Through the process's root first (containers), then the host path.
            syms = ElfSymbols.load(f"/proc/{pid}/root{path}") if pid else None
            if syms is None or syms.image is None:
                syms = ElfSymbols.load(path)
            else:
                syms.path = path
        self.binaries[path] = syms
        return syms

    def uid_of(self, pid: int) -> int | None:
        maps = self.processes.get(pid)
        return maps.uid if maps is not None and maps.uid is not None else process_uid(pid)

    def perf_map(self, pid: int) -> PerfMap:
        pm = self.perf_maps.get(pid)
        if pm is None:
            pm = self.perf_maps[pid] = PerfMap(os.path.join(PERF_MAP_DIR, f"perf-{pid}.map"))
        now = time.monotonic()
        if now - pm.checked >= PERF_MAP_RECHECK_S:   # not once per frame of a stack
            pm.checked = now
            pm.refresh(self.uid_of(pid))
        return pm

    def resolve(self, address: int, pid: int) -> tuple[str, str, int] | None:
        """(name, module, offset) or None."""
        if pid not in self.processes:
            self.remember(pid)
        hit = self._resolve(address, pid)
        maps = self.processes.get(pid)
        if hit is None and pid not in self._rechecked:
            # Mapped (or exec'd) since the snapshot: look again, once, while it lives.
            self._rechecked.add(pid)
            if maps is not None and maps.stale():
                self.processes.pop(pid, None)
            self.refresh(pid)
            hit = self._resolve(address, pid)
        return hit

    def mapping_of(self, address: int, pid: int) -> Mapping | None:
        """The executable mapping holding an address of pid (snapshot first;
        looked for again, once, while the process lives)."""
        if pid not in self.processes:
            self.remember(pid)
        if pid in self.dead:
            self.dead.move_to_end(pid)
        maps = self.processes.get(pid)
        mapping = maps.find(address) if maps else None
        now = time.monotonic()
        if mapping is None and pid not in self.dead and \
                now - self._resnapshot.get(pid, -RESNAPSHOT_S) >= RESNAPSHOT_S:
            self._resnapshot[pid] = now   # mapped (or exec'd) since: look again
            if maps is not None and maps.stale():
                self.processes.pop(pid, None)
            self.refresh(pid)
            maps = self.processes.get(pid)
            mapping = maps.find(address) if maps else None
        return mapping

    def locate(self, address: int, pid: int) -> tuple[ElfSymbols, int, str] | None:
        """(the binary's symbols, link-time address, path) for a mapped address."""
        maps = self.processes.get(pid)
        mapping = maps.find(address) if maps else None
        if mapping is None or not (mapping.path.startswith("/") or mapping.path == "[vdso]"):
            return None
        syms = self.binary(mapping.path, pid)
        if syms.image is None:
            return None
        vaddr = syms.image.vaddr_of_offset(address - mapping.start + mapping.offset)
        return None if vaddr is None else (syms, vaddr, mapping.path)

    def _resolve(self, address: int, pid: int) -> tuple[str, str, int] | None:
        located = self.locate(address, pid)
        if located is not None:
            syms, vaddr, path = located
            hit = syms.lookup(vaddr)
            if hit:
                return _demangle(hit[0]), os.path.basename(path), hit[1]
        jit = self.perf_map(pid).lookup(address)
        if jit is not None:
            return jit, "[jit]", 0
        return None

    def rule_for(self, pid: int):
        """unwind.recover_frames's question: the CFI rule at an address of pid."""
        def rule(address: int, is_return: bool):
            # a return address points after the call: look up the call itself
            located = self.locate(address - 1 if is_return else address, pid)
            if located is None:
                return None
            syms, vaddr, _ = located
            if syms.cfi is None:
                syms.cfi = cfi_of(syms.image) or False
            return syms.cfi.rule_at(vaddr) if syms.cfi else None
        return rule


def module_info(syms: ElfSymbols) -> ModuleInfo | None:
    """The pprof mapping of a module: its executable segment and build id."""
    if syms.image is None:
        return None
    if syms.info is None:
        text = syms.image.text_segment()
        syms.info = ModuleInfo(syms.path, syms.image.build_id(),
                               text.vaddr if text else 0,
                               text.vaddr + text.memsz if text else 0,
                               text.offset if text else 0)
    return syms.info


class KernelModules:
    """Address ranges of loaded kernel modules (/proc/modules), to name
    kernel addresses kallsyms does not cover."""

    def __init__(self) -> None:
        self.ranges: list[tuple[int, int, str]] = []
        self.loaded = False

    def load(self) -> None:
        self.loaded, ranges = True, []
        try:
            with open("/proc/modules") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) >= 6 and parts[5].startswith("0x") and int(parts[5], 16):
                        ranges.append((int(parts[5], 16), int(parts[1]), parts[0]))
        except (OSError, ValueError):
            pass
        self.ranges = sorted(ranges)

    def name(self, address: int) -> str:
        if not self.loaded:
            self.load()
        for base, size, name in self.ranges:
            if base <= address < base + size:
                return unnamed(f"{name}.ko", address - base)
        return unnamed("[kernel.kallsyms]", address)


def function_name(frame: Frame) -> str:
    """The function's own name in a frame a Symbolizer named with offset and
    module (`malloc` of `malloc+0x1a [libc.so.6]`), for JSON, where names are
    bare; an unnamed frame keeps its module and address."""
    name, suffix = frame.name, f" [{frame.module}]"
    if frame.module and name.endswith(suffix):
        name = name[:-len(suffix)]
    if Frame(name, frame.kind, module=frame.module).unknown:
        return name
    return name.rsplit("+0x", 1)[0]


def _set_nice(tid: int, nice: int) -> None:
    """One thread's nice value (per thread on Linux); lowering it needs
    CAP_SYS_NICE, without which it stays as it was."""
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:   # not permitted, or the thread is gone
        pass


_NOT_LOADED = object()


class Symbolizer:
    def __init__(self, bpf: Any = None, *, show_module: bool = False,
                 show_offset: bool = False) -> None:
        self.bpf = bpf   # unused since user symbols moved here; kept for callers
        self.show_module = show_module
        self.show_offset = show_offset
        self._cache = Lru(FRAME_CACHE_ENTRIES)     # (pid or -1, address) -> Frame
        self.unknown_frames = 0
        self.users = UserSymbols()
        self.kernel_modules = KernelModules()
        # user stack id -> saved leaf registers and stack bytes (struct ptk_leaf)
        self.leaves: dict[int, Any] = {}
        # the in-kernel unwinder's stacks (ptk_unwind.h `ustacks`) and modules
        self.ustacks: Any = None
        self.unwinder: Any = None
        self._ustack_cache = Lru(FRAME_CACHE_ENTRIES)   # stack hash -> raw frames
        self._word_frames: dict[int, Frame] = {}   # a stored word -> its frame (_unwound_stack)
        # stack hash -> (its frames, how many unnamed), for stacks of module frames only
        self._named_ustacks = Lru(FRAME_CACHE_ENTRIES)
        self.kstacks: Any = None   # kernel stacks by hash (ptk_kstack.h KSTACK_HASH)
        # frame-pointer walks by hash (ptk_ustack.h USTACK_LAYOUT 1: addresses)
        self.fp_ustacks: Any = None
        self._kernel_warm: "threading.Thread | None" = None   # warm_kernel()'s reader
        self._kernel_table: Any = _NOT_LOADED   # kallsyms.KernelSymbolTable, or None
        self._kernel_nice = 0

    def remember(self, pid: int) -> None:
        """Keep what is needed to name a process's frames after it exits."""
        self.users.remember(pid)

    def clear_stacks(self) -> None:
        """Forget stacks read from the unwinder's map (it was emptied)."""
        self._ustack_cache.clear()
        self._named_ustacks.clear()

    def warm_up(self, pids: Iterable[int]) -> "threading.Thread":
        """Read the symbols of the files the given processes map while the caller
        compiles or loads its program (the compiler runs in C without the GIL).
        Join the thread before using this symbolizer. The kernel's symbols are
        not read here: BCC reads all of /proc/kallsyms (~85 ms of CPU) at the
        first kernel frame named (kernel()), after the run, so that a launch from
        the program cache does not wait for it before attaching, and the traced
        work is not slowed by it either (read while attached, it stretched
        offwaketime's measured blocks); profile has it read once attached, at
        nice 19 (warm_kernel). Read after loading, kallsyms names the
        tool's own program too (collect.stack_maps.without_bpf_frames)."""
        import threading

        def work() -> None:
            try:
                for pid in pids:
                    maps = ProcessMaps.snapshot(pid)
                    for m in maps.mappings if maps else ():
                        if m.path.startswith("/"):
                            self.users.binary(m.path, pid).lookup(0)
            except Exception:   # naming will read what it needs itself
                pass
        thread = threading.Thread(target=work, name="symbols-warm-up", daemon=True)
        thread.start()
        return thread

    def warm_kernel(self) -> None:
        """Load the kernel's symbol table (kallsyms.load: this boot's from the
        cache, else /proc/kallsyms read, ~50 ms of the kernel's CPU, and parsed)
        in a thread now instead of at the first kernel frame named at the end
        of the run: call it once attached. kallsyms is read at the lowest
        priority, without the GIL (nice 19 is per thread on Linux): a CPU the
        traced work wants is left to it; the parse, holding the GIL, runs at
        the caller's priority, since a thread preempted while holding it would
        stall the main thread's polls. kernel() waits for the thread."""
        import threading
        if self._kernel_warm is not None:
            return
        # the caller's nice (who 0: the calling thread), to go back to
        self._kernel_nice = os.getpriority(os.PRIO_PROCESS, 0)

        def read_low() -> bytes | None:
            tid = threading.get_native_id()
            _set_nice(tid, 19)
            try:
                return kallsyms.read_kallsyms()
            finally:
                _set_nice(tid, self._kernel_nice)

        def work() -> None:
            try:
                self._kernel_table = kallsyms.load(read=read_low)
            except Exception:   # kernel() names through BCC
                self._kernel_table = None
        self._kernel_warm = threading.Thread(target=work, name="kernel-symbols-warm-up",
                                             daemon=True)
        self._kernel_warm.start()

    def _kernel_warmed(self) -> None:
        """Wait for warm_kernel's thread, at the caller's priority from now on:
        the run is over and its names are what the caller waits for."""
        thread = self._kernel_warm
        if thread is not None and thread.is_alive():
            if thread.native_id is not None:
                _set_nice(thread.native_id, self._kernel_nice)
            thread.join()
        if self._kernel_table is _NOT_LOADED:
            try:
                self._kernel_table = kallsyms.load()
            except Exception:   # pylint: disable=broad-except  (BCC names them)
                self._kernel_table = None

    def _label(self, name: str, module: str, offset: int) -> str:
        if self.show_offset:
            name = f"{name}+{offset:#x}"
        if self.show_module and module:
            name = f"{name} [{module}]"
        return name

    def kernel(self, address: int) -> Frame:
        key = (-1, address)
        frame = self._cache.get(key)
        if frame is None:
            self._kernel_warmed()
            name = self._kernel_name(address)
            if not name or name.startswith("[unknown]"):
                name = self.kernel_modules.name(address)
            frame = Frame(name, "kernel", module="kernel", address=address)
            self._cache[key] = frame
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def kernel_name(self, address: int) -> str:
        """The kernel symbol at `address` in BCC's form (name+0xOFFSET [module],
        as show_offset and show_module ask), "" or BCC's "[unknown]" when none:
        the name alone, without kernel()'s module fallback and frame."""
        self._kernel_warmed()
        return self._kernel_name(address)

    def _kernel_name(self, address: int) -> str:
        """From the symbol table; what it leaves (BPF programs, trampolines,
        a module loaded since) from BCC's read of kallsyms, made now."""
        found = self._kernel_table.lookup(address) if self._kernel_table else None
        if found is None:
            return self._bcc_kernel_name(address)
        return self._label(*found)   # the table's module is never empty

    def _bcc_kernel_name(self, address: int) -> str:
        """BCC's name for a kernel address, "" when it has none, or only one that
        may be stale (see STALE_KERNEL_OFFSET) even after reading kallsyms again."""
        import re
        from bcc import BPF
        from ..kernel.bpfsys import prog_ids, prog_lengths
        for again in (False, True):
            raw = BPF.ksym(address, show_module=True, show_offset=True)
            text = raw.decode(errors="replace") if raw else ""
            offset = re.search(r"\+0x([0-9a-f]+)(?= \[|$)", text)
            far = offset is not None and int(offset[1], 16) >= STALE_KERNEL_OFFSET
            programs = prog_ids() if text.endswith(" [bpf]") else None
            if not far and (programs is None or programs == _bcc_kallsyms_programs[0]):
                break
            # a program's own name, the address within its JIT image: exact whatever
            # was loaded since (a subprogram's tag is not its program's: not known)
            tag = re.match(r"bpf_prog_([0-9a-f]{16})_", text)
            if not far and tag and offset is not None and \
                    int(offset[1], 16) < prog_lengths(programs).get(tag[1], 0):
                break
            now = time.monotonic()
            if again or now - _bcc_kallsyms_reread_at[0] < BCC_KALLSYMS_REREAD_S:
                return ""
            _bcc_kallsyms_reread_at[0] = now
            _bcc_kallsyms_programs[0] = prog_ids()   # before the read: a later one differs
            _drop_bcc_kernel_symbols()
        if not self.show_module:
            text = re.sub(r" \[[^\]]*\]$", "", text)
        if offset is not None and not self.show_offset:
            text = text[:offset.start()] + text[offset.end():]
        return text

    def user(self, address: int, pid: int) -> Frame:
        key = (pid, address)
        frame = self._cache.get(key)
        if frame is None:
            frame = self._cache[key] = self._user_frame(address, pid)
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def _user_frame(self, address: int, pid: int) -> Frame:
        mapping = self.users.mapping_of(address, pid)
        if mapping is not None and (mapping.path.startswith("/") or mapping.path == "[vdso]"):
            syms = self.users.binary(mapping.path, pid)
            file_offset = address - mapping.start + mapping.offset
            vaddr = syms.image.vaddr_of_offset(file_offset) if syms.image else None
            frame = self._vaddr_frame(syms, vaddr, address) if vaddr is not None else None
            if frame is not None and not frame.unknown:
                return frame
            return self._jit_frame(address, pid) or frame or \
                Frame(unnamed(os.path.basename(mapping.path), file_offset), "user",
                      os.path.basename(mapping.path), address)
        jit = self._jit_frame(address, pid)
        if jit is not None:
            return jit
        if mapping is not None:   # anonymous executable memory (a JIT without a perf map)
            where = mapping.path if mapping.path.startswith("[") else "[anon]"
            where = "[anon]" if where.startswith("[anon") else where
            return Frame(unnamed(where, address), "user", where, address)
        return Frame(unnamed(UNKNOWN, address), "user", address=address)

    def _jit_frame(self, address: int, pid: int) -> Frame | None:
        name = self.users.perf_map(pid).lookup(address)
        if name is None:
            return None
        return Frame(self._label(name, "[jit]", 0), "jit", module="[jit]", address=address)

    def _vaddr_frame(self, syms: ElfSymbols, vaddr: int, address: int) -> Frame:
        """The frame at a link-time address of one file: its function, else
        `MODULE+0xVADDR`; with the module's pprof mapping."""
        module = os.path.basename(syms.path)
        hit = syms.lookup(vaddr)
        name = self._label(_demangle(hit[0]), module, hit[1]) if hit else unnamed(module, vaddr)
        return Frame(name, "user", module, address, vaddr, module_info(syms))

    def file_frame(self, path: str, file_offset: int) -> Frame:
        """A frame named by its file and file offset (build-id stack maps)."""
        key = (path, -1 - file_offset)
        frame = self._cache.get(key)
        if frame is None:
            syms = self.users.binary(path)
            vaddr = syms.image.vaddr_of_offset(file_offset) if syms.image else None
            module = os.path.basename(path)
            frame = self._vaddr_frame(syms, vaddr, file_offset) if vaddr is not None else \
                Frame(unnamed(module, file_offset), "user", module, file_offset)
            self._cache[key] = frame
        return frame

    def module_frame(self, path: str, vaddr: int, pid: int = 0) -> Frame:
        """A frame named by its file and link-time address: no process needed
        (for stacks stored as module + offset)."""
        key = (path, vaddr)
        frame = self._cache.get(key)
        if frame is None:
            frame = self._cache[key] = self._vaddr_frame(self.users.binary(path, pid),
                                                         vaddr, vaddr)
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def unwound_stack(self, stack_hash: int, pid: int) -> list[Frame]:
        """Frames of a stack the BPF unwinder stored under `stack_hash`, leaf
        first. Callers are named at return address - 1 (the call itself: a
        call to a noreturn function may end its caller)."""
        named = self._named_ustacks.get(stack_hash)
        if named is not None:   # a stack shared by several counted keys: named once
            frames, unknown = named
            self.unknown_frames += unknown
            return list(frames)
        before = self.unknown_frames
        frames, in_modules = self._unwound_stack(stack_hash, pid)
        if frames and in_modules:
            # every frame is (module, address): the same names in any process
            self._named_ustacks[stack_hash] = (tuple(frames), self.unknown_frames - before)
        return frames

    def walked_by_frame_pointers(self, stack_hash: int) -> bool:
        """The stack unwound_stack just named is the frame-pointer fallback
        of a program that unwinds by CFI (not --unwind fp): mark it NOT_LOADED."""
        raw = self._ustack_cache.get(stack_hash)
        return self.unwinder is not None and raw is not None and bool(raw[1])

    def marked_unwound_stack(self, stack_hash: int, pid: int) -> list[Frame]:
        """unwound_stack, rooted in NOT_LOADED when it is the frame-pointer
        fallback (the stack may not be whole: say so where it is shown)."""
        frames = self.unwound_stack(stack_hash, pid)
        if frames and self.walked_by_frame_pointers(stack_hash):
            frames.append(NOT_LOADED)
        return frames

    def _unwound_stack(self, stack_hash: int, pid: int) -> tuple[list[Frame], bool]:
        """The stack's frames, and whether every one is in a module (the same
        names in any process)."""
        from .unwinder import FALLBACK as USTACK_FALLBACK, split_frame
        raw = self._ustack_cache.get(stack_hash)
        if raw is None:
            for table in (self.ustacks, self.fp_ustacks):
                try:
                    value = table[table.Key(stack_hash)]
                except (KeyError, TypeError, AttributeError):
                    continue
                # a frame-pointer walk's absolute addresses (process not loaded
                # yet; fp_ustacks has no flags: all are)
                self.cache_unwound(stack_hash, tuple(value.frames[:value.len]),
                                   getattr(value, "flags", USTACK_FALLBACK))
                raw = self._ustack_cache.get(stack_hash)
                break
            else:
                return [], False
        raw, fallback = raw
        if fallback:
            return above_start_dropped([self.user(a, pid) for a in raw]), False
        # a stored word (module id, address) names the same frame in every
        # stack and process (module ids are never reused): named once, then
        # found in a plain dict (a read names ~15 frames per stack)
        words = self._word_frames
        if len(words) > FRAME_CACHE_ENTRIES:
            words.clear()
        frames, in_modules = [], True
        for i, word in enumerate(raw):
            key = word << 1 | (i > 0)   # a caller is named at its return address - 1
            frame = words.get(key)
            if frame is not None:
                if frame.unknown:
                    self.unknown_frames += 1
                frames.append(frame)
                continue
            module_id, vaddr = split_frame(word)
            mod = self.unwinder.module(module_id) if module_id and self.unwinder else None
            if mod is not None:
                frame = words[key] = self.module_frame(mod.path, vaddr - (1 if i else 0), pid)
                frames.append(frame)
            else:   # an absolute address: the process's
                frames.append(self.user(vaddr, pid))
                in_modules = False
        return frames, in_modules

    def cache_unwound(self, stack_hash: int, words: tuple, flags: int) -> bool:
        """Keep a stack read from the unwinder's map ahead of naming it
        (collect.stack_maps.prefetch_unwound); False once the cache is full."""
        from .unwinder import FALLBACK as USTACK_FALLBACK
        if stack_hash not in self._ustack_cache:
            self._ustack_cache[stack_hash] = (words, flags & USTACK_FALLBACK)
        return len(self._ustack_cache) < FRAME_CACHE_ENTRIES

    def hashed_kernel_stack(self, stack_hash: int) -> list[Frame]:
        """Frames of a kernel stack stored in `kstacks` under its hash, leaf first."""
        try:
            value = self.kstacks[self.kstacks.Key(stack_hash)]
        except (KeyError, TypeError):
            return []
        return [self.kernel(a) for a in value.ips[:value.len]]

    def stack(self, stack_map: Any, stack_id: int, *, pid: int = -1,
              kernel: bool = False) -> list[Frame]:
        """Frames of one stored stack, leaf first; [] for a negative (missing) id."""
        if stack_id < 0:
            return []
        addresses: Iterable[int] = stack_map.walk(stack_id)
        if kernel:
            return [self.kernel(a) for a in addresses]
        leaf = self.leaves.get(stack_id)
        if leaf is not None:
            addresses = recover_frames(list(addresses), leaf.ip, leaf.sp, leaf.bp,
                                       bytes(leaf.stack), self.users.rule_for(pid))
        return above_start_dropped([self.user(a, pid) for a in addresses])


def above_start_dropped(frames: list[Frame]) -> list[Frame]:
    """A leaf-first user stack ends at the program's entry: a frame-pointer
    walk reads one more (garbage) return address above `_start`."""
    for i, frame in enumerate(frames):
        if frame.name == "_start" and frame.kind == "user":
            return frames[:i + 1]
    return frames

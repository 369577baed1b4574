"""Reading `struct ptk_stack_key` maps (bpf/pytracekit.h) into a StackProfile."""
from __future__ import annotations

import ctypes
import struct
from typing import Any, Callable

from ..model import Frame, LossReport, Sample, StackProfile, leaf_counts
from ..symbolize.symbols import NOT_LOADED, Symbolizer
from ..textsafe import cstr

# Between user and kernel frames when a tool asks for a delimiter (BCC's -d).
DELIMITER = Frame("--", "marker")
EFAULT = 14
MISSED_USER = Frame("[Missed User Stack]", "marker")
MISSED_KERNEL = Frame("[Missed Kernel Stack]", "marker")


def stack_missed(stack_id: int) -> bool:
    """A stack that should exist but was not stored (BCC's stack_id_err)."""
    return stack_id < 0 and stack_id != -EFAULT


_BPF_FRAME_PREFIXES = ("bpf_prog_", "bpf_trace_run", "__bpf_trace_", "__traceiter_",
                       "bpf_trampoline_", "bpf_dispatcher_")
# The frames that call a BPF program; only ever the observer's.
_BPF_CALLER_PREFIXES = ("bpf_trace_run", "__bpf_trace_", "__traceiter_", "bpf_trampoline_")
_BPF_FRAMES_SEARCHED = 6


def without_bpf_frames(kstack: list[Frame]) -> list[Frame]:
    """Drop the BPF program's own frames from the leaf of a kernel stack taken
    in a raw tracepoint (bpf_prog_..., bpf_trace_run4, __traceiter_sched_switch
    when several programs share it) or an fentry trampoline (bpf_prog_...,
    bpf_trampoline_...): they are the observer, and a kprobe's stack starts at
    the probed function itself. The program's own address may carry a
    neighbour's name (kallsyms read before it was loaded: bpf_dispatcher_xdp),
    so everything below the last calling frame goes."""
    cut = 0
    for i, frame in enumerate(kstack[:_BPF_FRAMES_SEARCHED]):
        if frame.name.startswith(_BPF_CALLER_PREFIXES):
            cut = i + 1
    while cut < len(kstack) and kstack[cut].name.startswith(_BPF_FRAME_PREFIXES):
        cut += 1
    return kstack[cut:]


def annotated(frame: Frame) -> Frame:
    """BCC's -a: kernel frames get a `_[k]` suffix (flamegraph.pl colours them)."""
    return Frame(frame.name + "_[k]", frame.kind, frame.module, frame.address)


def stack_path(symbolizer: Symbolizer, stack_map: Any, *, pid: int, user_stack_id: int,
               kernel_stack_id: int, user: bool = True, kernel: bool = True,
               delimit: bool = False, missing: bool = False,
               annotate: bool = False, user_stack_hash: int = 0,
               kernel_stack_hash: int = 0, user_frames: list[Frame] | None = None
               ) -> list[Frame]:
    """User then kernel frames, root first; `missing` names stacks that were lost
    as BCC does, `annotate` adds `_[k]` to kernel frames. A nonzero
    `user_stack_hash` is a user stack of the in-kernel unwinder (ptk_unwind.h),
    a nonzero `kernel_stack_hash` a kernel stack in `kstacks` (ptk_kstack.h);
    `user_frames` (leaf first) a user stack unwound in user space instead
    (first_samples.py)."""
    if not user:
        ustack = []
    elif user_frames is not None:
        ustack = user_frames
    elif user_stack_hash:
        ustack = symbolizer.unwound_stack(user_stack_hash, pid)
        if ustack and symbolizer.walked_by_frame_pointers(user_stack_hash):
            ustack = [*ustack, NOT_LOADED]   # its root: the stack may not be whole
    else:
        ustack = symbolizer.stack(stack_map, user_stack_id, pid=pid)
    if not kernel:
        kstack = []
    elif kernel_stack_hash:
        kstack = symbolizer.hashed_kernel_stack(kernel_stack_hash)
    else:
        kstack = symbolizer.stack(stack_map, kernel_stack_id, kernel=True)
    kstack = without_bpf_frames(kstack)
    if annotate:
        kstack = [annotated(f) for f in kstack]
    path: list[Frame] = []
    if user:
        path += [MISSED_USER] if missing and stack_missed(user_stack_id) else reversed(ustack)
    has_user = user_stack_id >= 0 or user_stack_hash != 0 or user_frames is not None
    has_kernel = kernel_stack_id >= 0 or kernel_stack_hash != 0
    if delimit and has_user and has_kernel and user and kernel:
        path.append(DELIMITER)
    if kernel:
        path += [MISSED_KERNEL] if missing and stack_missed(kernel_stack_id) else reversed(kstack)
    return path


def sample_from_key(key: Any, value: int, stack_map: Any, symbolizer: Symbolizer, *,
                    user: bool = True, kernel: bool = True, delimit: bool = False,
                    include_comm: bool = True, missing: bool = False,
                    annotate: bool = False, user_frames: list[Frame] | None = None) -> Sample:
    """One aggregated stack, root first: comm, user frames, [--], kernel frames."""
    comm = cstr(key.comm)
    path: list[Frame] = [Frame(comm, "process")] if include_comm else []
    path += stack_path(symbolizer, stack_map, pid=key.pid, user_stack_id=key.user_stack_id,
                       kernel_stack_id=key.kernel_stack_id, user=user, kernel=kernel,
                       delimit=delimit, missing=missing, annotate=annotate,
                       user_stack_hash=getattr(key, "user_stack_hash", 0),
                       kernel_stack_hash=getattr(key, "kernel_stack_hash", 0),
                       user_frames=user_frames)
    return Sample(tuple(path), value, pid=key.pid, tid=key.tid, comm=comm)


def map_items(table: Any) -> list[tuple[Any, Any]]:
    """Every (key, value) of a BPF hash map in BPF_MAP_LOOKUP_BATCH calls of
    1024 entries where the kernel has them (mapdrain.snapshot: BCC's
    items_lookup_batch allocates and wraps arrays for the map's whole
    capacity, a tenth of the end of a profile), else a lookup per key."""
    from .mapdrain import snapshot
    try:
        return snapshot(table)
    except OSError:
        return table.items()


def prefetch_unwound(symbolizer: Symbolizer) -> None:
    """Read every stack stored in the unwinder's map at once (batches of
    BPF_MAP_LOOKUP_BATCH, parsed from the buffers: no ctypes object per
    stack), before a read names most of them: one system call per stack was a
    tenth of the end of a profile."""
    table = symbolizer.ustacks
    if table is None:
        return
    from .mapdrain import raw_snapshot
    leaf = table.Leaf
    size, key_size = ctypes.sizeof(leaf), ctypes.sizeof(table.Key)
    frames_at, most = leaf.frames.offset, leaf.frames.size // 8
    try:
        for keys, values, count in raw_snapshot(table):
            hashes = keys[:count * key_size].cast("Q")
            for i in range(count):
                at = i * size
                length, flags = _USTACK_HEAD.unpack_from(values, at)
                words = values[at + frames_at:at + frames_at + 8 * min(length, most)]
                if not symbolizer.cache_unwound(hashes[i], tuple(words.cast("Q")), flags):
                    return
    except (OSError, AttributeError, TypeError):   # read one by one when named, as before
        return


_USTACK_HEAD = struct.Struct("<HH")   # struct ptk_ustack: u16 len, u16 flags, ..., u64 frames[]
# Counted keys above which a read takes every unwound stack in one batch read
# (prefetch_unwound) rather than one lookup per stack it names
PREFETCH_ABOVE = 64


def read_profile(counts_map: Any, stack_map: Any, symbolizer: Symbolizer, loss: LossReport,
                 **options: Any) -> StackProfile:
    items = map_items(counts_map)
    if len(items) > PREFETCH_ABOVE:
        prefetch_unwound(symbolizer)
    samples = [sample_from_key(k, v.value, stack_map, symbolizer, **options)
               for k, v in items]
    loss.unknown_frames += symbolizer.unknown_frames
    return StackProfile(samples=samples, loss=loss)


SETTLE_S = (0.02, 0.1, 0.5)
# System-wide, polls are at least this far apart: under process churn every
# announcement and settle check woke the tool (~140 times a second, each poll
# costing tens of microseconds); now they are handled in batches (checks due
# within a batch wait for its end). Only after a wake-up that had work: a quiet
# poll waits once, not a batch's sleep and then the wait (each blocking wait
# costs ~40 us of CPU here, a tenth of the profiler's own CPU at 99 Hz).
BATCH_S = 0.03


def watch_new_pids(prog: Any, symbolizer: Symbolizer, ring: str = "new_pids",
                   settle_s: tuple[float, ...] = SETTLE_S,
                   unwinder: Any = None, batch_s: float = 0.0) -> Callable[[int], None]:
    """Open the ring buffer where a BPF program announces pids it sees first (and
    again after an exec) and return a `poll(timeout_ms)` for run_until_done that
    snapshots each one's maps. A pid announced right after exec may not have
    mapped its libraries yet (ld.so does that), so each is snapshot again at
    the `settle_s` delays while it lives (a dead one keeps its last snapshot).
    With an `unwinder` (unwinder.py), each snapshot is also loaded into the
    BPF unwinder, and its `unwind_miss` ring (a pc outside the known mappings)
    makes a new snapshot. `batch_s`: the least time between two wake-ups
    (0 for a held command, whose processes wait for their load)."""
    import ctypes
    import time
    from .stream import CallbackRings, callbacks_run
    from ..engine.runner import stop_pending
    due: list[tuple[float, int]] = []

    def on_pid(_cpu: int, data: int, _size: int) -> int:
        pid = ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32)).contents.value
        symbolizer.users.forget(pid)   # announced again after an exec: new maps
        symbolizer.remember(pid)
        if unwinder is not None:
            unwinder.request(pid)
        now = time.monotonic()
        due.extend((now + delay, pid) for delay in settle_s)
        due.sort()
        return 0

    rings = CallbackRings(prog)       # a Ctrl-C inside the callback would die in ctypes
    rings.open(ring, on_pid)

    def on_miss(_cpu: int, data: int, _size: int) -> int:
        unwinder.on_miss(ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32)).contents.value)
        return 0

    def on_stopped(_cpu: int, data: int, _size: int) -> int:
        pid, first = ctypes.cast(data, ctypes.POINTER(ctypes.c_uint32 * 2)).contents
        unwinder.continue_(pid, bool(first))   # struct ptk_unwind_hold
        return 0

    if unwinder is not None:
        rings.open("unwind_miss", on_miss)
        rings.open("unwind_stopped", on_stopped)

    last_wake = [0.0]
    worked = [False]   # the last wake-up brought events or due checks

    def poll(timeout_ms: int) -> None:
        now = time.monotonic()
        asked = timeout_ms   # 0: now, without waiting (a read)
        if due:
            timeout_ms = max(0, min(timeout_ms, int((due[0][0] - now) * 1000)))
        loading = unwinder is not None and unwinder.pending
        if loading:
            timeout_ms = min(timeout_ms, 5)
        idle = last_wake[0] + batch_s - now
        if idle > 0 and asked > 0 and not loading and worked[0]:
            # events and due checks wait for the batch: a settle check due
            # before it is made with the batch's others (one wake-up each
            # cost ~300 wake-ups a second under churn)
            time.sleep(idle)
            timeout_ms = max(0, timeout_ms - int(idle * 1000))
        if stop_pending():   # a Ctrl-C during the sleep: read what came, no wait
            timeout_ms = 0
        before = callbacks_run()
        rings.poll(timeout_ms)
        now = last_wake[0] = time.monotonic()
        worked[0] = callbacks_run() != before or bool(due and due[0][0] <= now)
        while due and due[0][0] <= now:
            pid = due.pop(0)[1]
            if not symbolizer.users.maps_changed(pid):
                continue   # nothing mapped since (a later miss still re-reads: on_miss)
            symbolizer.users.refresh(pid)
            if unwinder is not None:
                unwinder.request(pid)
        if unwinder is not None:
            unwinder.work()
    return poll


def relabel(profile: StackProfile, rename: Callable[[Frame], Frame]) -> StackProfile:
    """The same profile with every frame passed through `rename`."""
    samples = [Sample(tuple(rename(f) for f in s.stack), s.value, s.pid, s.tid, s.comm)
               for s in profile.samples]
    return StackProfile(samples, profile.value_type, profile.unit, profile.period,
                        profile.duration_ns, profile.loss, dict(profile.meta))


def merge_by_name(profile: StackProfile) -> StackProfile:
    """Stacks that symbolize the same (different addresses in one function)
    folded into one sample per process and stack of names."""
    # One object per distinct address-less frame (stacks share them), so a stack
    # is keyed by its frames' ids: hashing frames' fields for every dict lookup
    # was most of this at the end of a 999 Hz profile of Python.
    shared: dict[Frame, Frame] = {}
    named: dict[int, Frame] = {}    # id(frame) -> its shared address-less frame
    # (pid, tid, comm, ids of the stack's frames) -> [stack, value, leaf vaddr -> value]
    acc: dict[tuple, list] = {}

    def by_name(f: Frame) -> Frame:
        # address dropped (one box per name); vaddr/module kept for pprof
        g = Frame(f.name, f.kind, f.module, 0, f.vaddr, f.image) if f.address else f
        g = named[id(f)] = shared.setdefault(g, g)
        return g

    for s in profile.samples:
        stack = tuple([named.get(id(f)) or by_name(f) for f in s.stack])
        key = (s.pid, s.tid, s.comm, tuple(map(id, stack)))
        entry = acc.get(key)
        if entry is None:
            entry = acc[key] = [stack, 0, {}]
        entry[1] += s.value
        counts = entry[2]
        for vaddr, value in leaf_counts(s).items():
            counts[vaddr] = counts.get(vaddr, 0) + value
    samples = [Sample(stack, value, pid, tid, comm, tuple(sorted(counts.items())))
               for (pid, tid, comm, _), (stack, value, counts) in acc.items()]
    return StackProfile(samples, profile.value_type, profile.unit, profile.period,
                        profile.duration_ns, profile.loss, dict(profile.meta))

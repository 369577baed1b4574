"""The user-space half of bpf/ptk_python.h for a stack tool: registers
CPython processes in py_procs as BPF announces them, names each new Python
stack while its process lives (code objects can be freed and their addresses
reused, so names are read early), and turns py_counts into samples whose
Python frames are merged into the native ones (merge.py)."""
from __future__ import annotations

import ctypes
import functools
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..symbolize.python import layouts as pl
from ..model import Frame, Sample, StackProfile
from ..engine.runner import raise_pending, signals_deferred
from .stack_profilers import StackSession
from ..collect import cstruct
from ..collect.stack_maps import (DELIMITER, MISSED_USER, PREFETCH_ABOVE, map_items,
                                  prefetch_unwound, stack_missed, stack_path)
from ..symbolize.symbols import GONE, vm_sizes_of

if TYPE_CHECKING:   # imported where used: finding, reading and merging come after attaching
    from ..symbolize.python.runtime import PyProcess
    from ..symbolize.python.code import CodeReader

# states and event kinds as in bpf/ptk_python.h
PY_PENDING, PY_PYTHON, PY_NOT_PYTHON = 0, 1, 2
PY_EVENT_PROCESS, PY_EVENT_STACK = 0, 1
PY_FRAME_BOUNDARY = 1   # frame flags' bit 0; the others are the code's ident (code.code_ident)
GONE_PREFIX = "[python "   # a frame whose code object could not be read: [python 0x7f...]
STATS = ("stacks", "no_tstate", "read_fault", "pending", "map_full")
# a process announced at exec may not have mapped libpython yet (ld.so does):
# checked again after each delay (cumulative: 0, 0.02, 0.12, 0.62, 2.12 s)
CHECK_DELAYS_S = (0.0, 0.02, 0.1, 0.5, 1.5)
SWEEP_S = 1.0
FRAMES_KEPT = 16384   # named Python frames reused across stacks (then started afresh)   # exited processes' /proc/PID/mem closed this often


@functools.cache
def _event_type() -> Any:
    """struct ptk_py_event's ctypes type: read from the header at the first
    event, not at start-up."""
    return cstruct.struct_layout("ptk_python.h", "ptk_py_event").ctype()


def defines(stacks_size: int = 4096) -> dict[str, int]:
    """The -D parameters of ptk_python.h: the layout field indices and sizes."""
    out = {"PYTHON_STACKS": 1, "PY_NFIELDS": len(pl.FIELDS), "PY_ABSENT": pl.ABSENT,
           "PY_STACKS_SIZE": stacks_size}
    out.update({f"PYL_{name.upper()}": i for i, name in enumerate(pl.FIELDS)})
    return out


def frame_block(layout: pl.PyLayout) -> tuple[int, int]:
    """(start, length) of the bytes of a frame BPF reads in one go: exactly the
    fields used, since a frame at the top of 3.11+'s frame stack may end just
    before a page the process never touched (a read cannot fault it in)."""
    fields = ((layout.frame_previous, 8), (layout.frame_code, 8), (layout.frame_lasti, 4),
              (layout.frame_instr_ptr, 8), (layout.frame_owner, 1), (layout.frame_is_entry, 1))
    used = [(off, size) for off, size in fields if off is not None]
    start = min(off for off, _ in used)
    length = max(off + size for off, size in used) - start
    assert length <= 112, "frame fields outside the 112-byte block"
    return start, length


@dataclass(frozen=True)
class _Read:
    """A Python stack as read from its process: innermost-first (CodeInfo or
    None, code address, instruction offset, ends an eval call) per frame."""

    reader: Any            # the process's CodeReader (None: not registered)
    frames: tuple
    truncated: int


class PythonFrames:
    """Attach to a loaded program built with defines(); poll() with the tool's poll."""

    def __init__(self, prog: Any, warn: Callable[[str], None] | None = None) -> None:
        self.prog = prog
        self.warn = warn or (lambda line: print(line, file=sys.stderr))
        self.readers: dict[int, Optional[CodeReader]] = {}
        self.due: list[tuple[float, int, int]] = []      # (when, pid, attempt)
        # stack id -> read while its process lived (_Read), named when first used
        self.stacks: dict[int, "_Read | list[tuple[Frame, bool]]"] = {}
        # new stacks announced during a poll, as stored: read after it, together
        self._unread: dict[int, Any] = {}
        self._frames: dict[tuple, Frame] = {}   # (code, offset, info) -> its frame
        self.vm_size: dict[int, int] = {}   # pid -> address space size at its last check
        self.swept = time.monotonic()        # when exited processes' memory was last closed
        self.unsupported: set[str] = set()
        # the tool's maps snapshots (symbols.UserSymbols), if it keeps them: a
        # process they show without a python-looking file is not read again
        self.snapshots: Any = None
        self.interrupted: list[BaseException] = []
        # of the last samples(): samples whose root-ward native frames were dropped
        # (merge), and samples with a code object that could not be read (freed)
        self.dropped_native = self.gone = 0
        # how those two are printed: values / value_divisor, then value_unit
        # (a blocked-time tool's values are nanoseconds: 1000, " us")
        self.value_divisor, self.value_unit = 1, ""
        prog["py_events"].open_ring_buffer(self._on_event)

    # -- processes ------------------------------------------------------------

    def register_at_entry(self, symbolizer: Any) -> None:
        """A command held at its entry point (the in-kernel unwinder's hold,
        unwinder.continue_) is registered there, before it runs: its first
        blocks and samples already have Python frames, where an announcement
        at its first event is answered only milliseconds later (tens under
        load: a script's first sleep had none)."""
        unwinder = getattr(symbolizer, "unwinder", None)
        if unwinder is not None:
            unwinder.entry_hooks.append(self.register_now)

    def register_now(self, pid: int) -> None:
        """Register pid if its interpreter is mapped; else its first event
        announces it as usual. The entry's mm is 0: BPF takes the process's
        own at its next event (no exec can come between for a stopped one; an
        entry left from before its exec, the held child's, has the old mm)."""
        try:
            proc = self._find(pid, None)
            if proc:
                self._register(proc, adopt=True)
                # a re-check due from before its exec would register it again,
                # with a new reader: the names read by then would be lost
                self.due = [d for d in self.due if d[1] != pid]
        except Exception as exc:   # never keep the command from starting
            self.warn(f"python frames: {exc}")

    def _on_event(self, _ctx: Any, data: int, _size: int) -> int:
        try:
            event = ctypes.cast(data, ctypes.POINTER(_event_type())).contents
            kind, pid, stack_id = event.kind, event.pid, event.stack_id
            if kind == PY_EVENT_PROCESS:        # new, or exec'd: another program now
                self._read_unread(pid)          # the old program's, by its reader
                old = self.readers.pop(pid, None)
                if old:
                    old.close()
                # the old program's checks out; the first check at this poll's end,
                # after the other rings' callbacks: the tool's snapshot of the process,
                # taken on its announcement, then answers it without a read of its maps
                self.due = [(0.0, pid, 0)] + [d for d in self.due if d[1] != pid]
            elif kind == PY_EVENT_STACK and stack_id not in self.stacks:
                stored = self._stored(stack_id)
                if stored is not None:          # else: tried again when read
                    self._unread[stack_id] = stored
        except Exception as exc:   # a callback must not raise through ctypes
            self.warn(f"python frames: {exc}")
        except BaseException as exc:   # Ctrl-C/SIGTERM: ctypes would drop it; poll raises it
            self.interrupted.append(exc)
            return -1                  # libbpf stops consuming
        return 0

    def _check(self, pid: int, attempt: int) -> None:
        sizes = vm_sizes_of(pid)
        if sizes == GONE:   # gone (or its status unreadable): nothing to look for
            self.vm_size.pop(pid, None)
            return
        # (the whole size, not only the code's: a 3.13 runtime whose data ld.so
        # had not mapped at the last look is looked for again once Python runs)
        size = sizes[0]
        snap = self._current_snapshot(pid, sizes[1])
        if attempt and size == self.vm_size.get(pid):
            proc = None   # nothing mapped since the last look: no libpython yet
        elif snap is not None and not snap.python_files:
            # most of a system-wide tool's new processes: no file an interpreter
            # could be in, and the maps are not read again
            self.vm_size[pid] = size
            proc = None
        else:
            self.vm_size[pid] = size
            proc = self._find(pid, snap.python_files if snap is not None else None)
            if proc is False:
                return
        if proc is not None:
            self.vm_size.pop(pid, None)
            self._register(proc)
        elif attempt + 1 < len(CHECK_DELAYS_S):
            self.due.append((time.monotonic() + CHECK_DELAYS_S[attempt + 1], pid, attempt + 1))
            self.due.sort()
        else:
            self.vm_size.pop(pid, None)
            self._set_state(pid, PY_NOT_PYTHON)

    def _current_snapshot(self, pid: int, exec_size: int) -> Any:
        """The tool's snapshot of pid if it was taken at this size of its
        executable mappings (symbols.ProcessMaps), else None: an interpreter's
        files are mapped with its code."""
        snap = self.snapshots.processes.get(pid) if self.snapshots is not None else None
        return snap if snap is not None and snap.exec_size == exec_size else None

    def _find(self, pid: int, mapped: dict[str, int] | None) -> PyProcess | None | bool:
        """The process's runtime, None (none mapped yet) or False (done: not one
        we can read, or gone). `mapped`: see runtime.find."""
        from ..symbolize.python.runtime import Unsupported, find, unsupported_line
        try:
            return find(pid, mapped)
        except Unsupported as exc:
            line = unsupported_line(pid, str(exc))
            if str(exc) not in self.unsupported:      # once per kind of interpreter
                self.unsupported.add(str(exc))
                self.warn(line)
            self._set_state(pid, PY_NOT_PYTHON)
            self.vm_size.pop(pid, None)
            return False
        except OSError:
            self.vm_size.pop(pid, None)
            return False                               # gone

    def _entry(self, pid: int) -> tuple[Any, Any, Any]:
        table = self.prog["py_procs"]
        key = table.Key(pid)
        try:
            leaf = table[key]
        except KeyError:
            leaf = table.Leaf()
        return table, key, leaf

    def _set_state(self, pid: int, state: int) -> None:
        table, key, leaf = self._entry(pid)
        leaf.state = state
        table[key] = leaf

    def _register(self, proc: PyProcess, adopt: bool = False) -> None:
        from ..symbolize.python.code import CodeReader
        try:
            self.readers[proc.pid] = CodeReader(proc)
        except OSError:
            return
        table, key, leaf = self._entry(proc.pid)
        if adopt:
            leaf.mm = 0   # see register_now
        leaf.runtime = proc.runtime
        for i, value in enumerate(proc.layout.as_u16()):
            leaf.layout[i] = value
        leaf.block_start, leaf.block_len = frame_block(proc.layout)
        leaf.minor = proc.version[1]
        leaf.state = PY_PYTHON
        table[key] = leaf

    def poll(self, inner: Callable[[int], None]) -> Callable[[int], None]:
        """The tool's poll, also running the scheduled re-checks."""
        def poll(timeout_ms: int) -> None:
            if self.due and timeout_ms > 0:   # (a due check waits for the tool's batch)
                timeout_ms = max(1, min(timeout_ms,
                                        int((self.due[0][0] - time.monotonic()) * 1000)))
            # Signals only recorded while C runs the callbacks: one raised between
            # two of them (outside any Python try) would be printed and dropped by
            # ctypes, and a system-wide run makes thousands of callbacks at start.
            with signals_deferred([]) as pending:
                inner(timeout_ms)
            raise_pending(pending)
            self._read_unread()
            if self.interrupted:
                raise self.interrupted.pop()
            now = time.monotonic()
            while self.due and self.due[0][0] <= now:
                _, pid, attempt = self.due.pop(0)
                self._check(pid, attempt)
            if now - self.swept >= SWEEP_S:
                self.swept = now
                self._close_exited()
        return poll

    def _close_exited(self) -> None:
        """Close the memory of exited processes (one fd each); their readers stay:
        what was read while they lived still names their stacks."""
        for pid, reader in self.readers.items():
            if reader and not reader.mem.closed and not os.path.exists(f"/proc/{pid}"):
                reader.mem.close()

    # -- stacks ---------------------------------------------------------------

    def _stored(self, stack_id: int) -> Any:
        """The stack as BPF stored it in py_stacks, None when it is not."""
        table = self.prog["py_stacks"]
        try:
            return table[table.Key(stack_id)]
        except KeyError:
            return None

    def _read_unread(self, pid: int | None = None) -> None:
        """Read the stacks announced since the last poll (only pid's: its
        program is about to change). A process's new stacks are read together,
        one check of their code objects for them all: a new process makes
        many new stacks at once."""
        if not self._unread:
            return
        if pid is None:
            stored, self._unread = self._unread, {}
        else:
            stored = {i: st for i, st in self._unread.items() if st.pid == pid}
            for i in stored:
                del self._unread[i]
        try:
            for stack_id, read in self._read_stored(stored).items():
                if read.frames:   # else: tried again when read
                    self.stacks[stack_id] = read
        except Exception as exc:   # as in _on_event: never end the run (named when read)
            self.warn(f"python frames: {exc}")

    def _read_stored(self, stored: dict[int, Any]) -> dict[int, "_Read"]:
        """What naming each (stack id: stored stack) needs from its live
        process, read now (code objects can be freed and their addresses
        reused), a process's stacks together; the names and lines are made
        when the profile is read (_named)."""
        by_pid: dict[int, list[tuple[int, Any]]] = {}
        for stack_id, st in stored.items():
            by_pid.setdefault(st.pid, []).append((stack_id, st))
        out = {}
        for pid, stacks in by_pid.items():
            reader = self.readers.get(pid)
            frames = [st.frames[:min(st.depth, len(st.frames))] for _, st in stacks]
            every = [f for fs in frames for f in fs]
            codes = [f.code for f in every]
            # the frames' idents (flags beside PY_FRAME_BOUNDARY: code.code_ident)
            infos = reader.check_many(codes, [f.flags & ~PY_FRAME_BOUNDARY for f in every]) \
                if reader else [None] * len(every)
            pos = 0
            for (stack_id, st), fs in zip(stacks, frames):
                n = len(fs)
                out[stack_id] = _Read(reader, tuple(zip(
                    infos[pos:pos + n], codes[pos:pos + n], [f.offset for f in fs],
                    [bool(f.flags & PY_FRAME_BOUNDARY) for f in fs])), st.truncated)
                pos += n
        return out

    def _named(self, read: "_Read") -> list[tuple[Frame, bool]]:
        """Innermost-first (frame, ends an eval call) of a stack read by _read_stored."""
        out = []
        made = self._frames
        for info, code, offset, boundary in read.frames:
            key = (code, offset, info)
            frame = made.get(key)
            if frame is None:
                if info is None:
                    frame = Frame(f"{GONE_PREFIX}{code:#x}]", "python", address=code)
                else:
                    line = read.reader.line(info, offset)
                    frame = Frame(f"{info.name} ({info.basename}:"
                                  f"{line if line is not None else '?'})",
                                  "python", module=info.filename, address=code)
                if len(made) >= FRAMES_KEPT:
                    made.clear()   # a long run (cprofile's windows) stays bounded
                made[key] = frame
            out.append((frame, boundary))
        if read.truncated:
            out.append((Frame(f"[+{read.truncated} python frames]", "python"), True))
        return out

    def clear_stacks(self) -> None:
        """Forget every stack and named frame (cprofile's windows start over)."""
        self.stacks.clear()
        self._unread.clear()
        self._frames.clear()

    def begin_read(self) -> None:
        """Reset the per-read counts (dropped_native, gone) before naming stacks."""
        self.dropped_native = self.gone = 0

    def python_stack(self, py_stack_id: int) -> list[tuple[Frame, bool]]:
        """Innermost-first (frame, ends an eval call) of a stored stack ([] if unknown)."""
        python = self.stacks.get(py_stack_id)
        if python is None:
            st = self._unread.pop(py_stack_id, None)
            if st is None:
                st = self._stored(py_stack_id)
            if st is not None:
                python = self._read_stored({py_stack_id: st})[py_stack_id]
        if isinstance(python, _Read):
            python = self._named(python)
        python = self.stacks[py_stack_id] = python or []
        return python

    def merged(self, native: list[Frame], py_stack_id: int, value: int) -> list[Frame]:
        """A root-first native user stack with the Python stack `py_stack_id`
        merged in; `value` is what it weighs in the dropped/gone counts."""
        python = self.python_stack(py_stack_id)
        if any(f.name.startswith(GONE_PREFIX) for f, _ in python):
            self.gone += value
        from ..symbolize.python.merge import merge
        path, dropped = merge(native, python)
        self.dropped_native += value if dropped else 0
        return path

    def key_path(self, symbolizer: Any, stack_map: Any, key: Any, py_stack_id: int,
                 value: int, *, user: bool = True, kernel: bool = True, delimit: bool = False,
                 missing: bool = False, annotate: bool = False) -> list[Frame]:
        """One ptk_stack_key's frames, root first: user frames with the Python
        stack `py_stack_id` merged in (0: none), [--], kernel frames. `value`
        is what the stack weighs in the dropped/gone counts."""
        unwound = getattr(key, "user_stack_hash", 0)
        hashed = getattr(key, "kernel_stack_hash", 0)   # KSTACK_HASH: kernel stacks by hash
        if not (user and py_stack_id):
            return stack_path(symbolizer, stack_map, pid=key.pid, user_stack_id=key.user_stack_id,
                              kernel_stack_id=key.kernel_stack_id, user=user, kernel=kernel,
                              delimit=delimit, missing=missing, annotate=annotate,
                              user_stack_hash=unwound, kernel_stack_hash=hashed)
        native = [MISSED_USER] if missing and stack_missed(key.user_stack_id) else \
            stack_path(symbolizer, stack_map, pid=key.pid, user_stack_id=key.user_stack_id,
                       kernel_stack_id=-14, user=True, kernel=False, user_stack_hash=unwound)
        path = self.merged(native, py_stack_id, value)
        has_user = key.user_stack_id >= 0 or unwound != 0
        if delimit and kernel and has_user and (key.kernel_stack_id >= 0 or hashed):
            path.append(DELIMITER)
        if kernel:
            path += stack_path(symbolizer, stack_map, pid=key.pid, user_stack_id=-14,
                               kernel_stack_id=key.kernel_stack_id, user=False,
                               kernel=True, missing=missing, annotate=annotate,
                               kernel_stack_hash=hashed)
        return path

    def samples(self, symbolizer: Any, stack_map: Any, *, user: bool = True,
                kernel: bool = True, delimit: bool = False, missing: bool = False,
                annotate: bool = False, include_comm: bool = True) -> list[Sample]:
        """py_counts as samples: comm, user frames with Python merged, [--], kernel."""
        out = []
        self.begin_read()
        items = map_items(self.prog["py_counts"])
        if len(items) > PREFETCH_ABOVE:
            prefetch_unwound(symbolizer)
        for k, v in items:
            key = k.key
            comm = key.comm.decode(errors="replace")
            path: list[Frame] = [Frame(comm, "process")] if include_comm else []
            path += self.key_path(symbolizer, stack_map, key, k.py_stack_id, v.value,
                                  user=user, kernel=kernel, delimit=delimit, missing=missing,
                                  annotate=annotate)
            out.append(Sample(tuple(path), v.value, pid=key.pid, tid=key.tid, comm=comm))
        return out

    def stats(self) -> dict[str, int]:
        table = self.prog["py_stats"]
        return {name: sum(table[table.Key(i)]) for i, name in enumerate(STATS)}

    def summary_line(self, noun: str = "samples") -> str:
        """One stderr line about Python samples that lost their Python frames
        (`noun`: what the tool takes stacks at, e.g. offcputime's "blocks")."""
        s = self.stats()
        lost = {k: s[k] for k in ("no_tstate", "read_fault", "map_full") if s[k]}
        if not s["stacks"] and not lost:
            return ""
        parts = [f"{s['stacks']} {noun} with Python frames"]
        parts += [f"{n} {k.replace('_', ' ')}" for k, n in lost.items()]
        if s["pending"]:
            parts.append(f"{s['pending']} of processes not yet checked for Python")
        div, unit = self.value_divisor, self.value_unit
        if self.dropped_native:
            parts.append(f"{self.dropped_native // div}{unit} with unreliable native frames "
                         "dropped")
        if self.gone:
            parts.append(f"{self.gone // div}{unit} with a code object gone before it was read")
        return "python: " + ", ".join(parts)

    def close(self) -> None:
        for reader in self.readers.values():
            if reader:
                reader.close()


@dataclass
class PythonStackSession(StackSession):
    """A stack tool's session whose CPython samples carry Python frames."""

    python: Any = None     # PythonFrames

    def samples(self) -> StackProfile:
        profile = super().samples()
        before = self.symbolizer.unknown_frames
        profile.samples += self.python.samples(self.symbolizer, self.prog["stack_traces"],
                                               **self.read_options)
        profile.loss.unknown_frames += self.symbolizer.unknown_frames - before
        return profile

    def summary_line(self) -> str:
        return self.python.summary_line()

    def close(self) -> None:
        try:
            self.python.close()
        finally:
            super().close()

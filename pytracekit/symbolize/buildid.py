"""User stacks that can be named after their process has exited.

A stack map created with BPF_STACK_TRACE_BUILDID stores each user frame as
(build id of the file, offset in the file) instead of an address, so naming
it needs no /proc/PID/maps: only the file with that build id. Candidates are
the binaries a tool probes, the files mapped by processes it watched, and,
for build ids still unknown, the libraries in the dynamic linker's cache.
Frames the kernel could only record as addresses (no build id: JIT code,
anonymous memory) are named through the process's maps snapshot.
"""
from __future__ import annotations

from typing import Any, Iterable

from .elfsyms import load_image
from ..model import Frame, unnamed

_EMPTY, _VALID, _IP = 0, 1, 2      # bpf_stack_build_id.status


def read_build_id(path: str) -> bytes | None:
    """The GNU build id of a 64-bit little-endian ELF file (elfsyms reads it)."""
    image = load_image(path)
    found = image.build_id() if image is not None else ""
    return bytes.fromhex(found) if found else None


def mapped_files(pid: int) -> set[str]:
    """Files a live process maps (its executable and libraries)."""
    out = set()
    try:
        with open(f"/proc/{pid}/maps", errors="surrogateescape") as f:   # non-UTF-8 paths
            for line in f:
                fields = line.split(None, 5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    out.add(fields[5].strip())
    except OSError:
        pass
    return out


def _has_maps(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps", "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False


def _linker_cache() -> list[str]:
    import subprocess   # here: only a library named without a path needs it
    try:
        text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.rsplit("=>", 1)[1].strip() for line in text.splitlines() if "=>" in line})


class BuildIdSymbolizer:
    """Names frames of a BPF_STACK_TRACE_BUILDID map through symbols.Symbolizer
    (the same names, caches and unnamed-frame rules as every stack tool);
    counts the ones it cannot name."""

    def __init__(self, *, show_offset: bool = False) -> None:
        from .symbols import Symbolizer
        self.symbolizer = Symbolizer(show_offset=show_offset)
        self.modules: dict[bytes, str] = {}     # build id -> path
        self._seen_paths: set[str] = set()
        self._searched_cache = False
        self.unknown_frames = 0

    def add_files(self, paths: Iterable[str]) -> None:
        for path in paths:
            if path in self._seen_paths:
                continue
            self._seen_paths.add(path)
            build_id = read_build_id(path)
            if build_id:
                build_id = build_id.ljust(20, b"\0")[:20]   # as the kernel stores it
            if build_id and build_id not in self.modules:
                self.modules[build_id] = path

    def remember(self, pids: Iterable[int]) -> None:
        """While these processes live: note the files they map (their build ids
        name frames after the processes exit) and snapshot their maps (for
        frames the kernel could only record as addresses). A gone process, or a
        zombie (empty maps), keeps its last snapshot."""
        for pid in pids:
            if pid <= 0 or not _has_maps(pid):
                continue
            self.symbolizer.users.forget(pid)
            self.symbolizer.remember(pid)
            self.add_files(mapped_files(pid))

    def _find(self, build_id: bytes) -> bool:
        if build_id in self.modules:
            return True
        if not self._searched_cache:   # once per run, only when something is unknown
            self._searched_cache = True
            self.add_files(_linker_cache())
        return build_id in self.modules

    def frame(self, entry: Any, pid: int) -> Frame:
        build_id = bytes(entry.build_id)[:20]
        if entry.status == _IP:
            frame = self.symbolizer.user(entry.offset, pid)
        elif self._find(build_id):
            frame = self.symbolizer.file_frame(self.modules[build_id], entry.offset)
        else:   # a file we never saw: its build id still tells which one
            where = "[buildid:" + build_id.rstrip(b"\0").hex() + "]"
            frame = Frame(unnamed(where, entry.offset), "user", where, entry.offset)
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def unwound(self, stack_hash: int, pid: int) -> list[Frame]:
        """Frames of a stack of the in-kernel unwinder (ustacks.py), leaf first."""
        frames = self.symbolizer.unwound_stack(stack_hash, pid) if stack_hash else []
        self.unknown_frames += sum(1 for f in frames if f.unknown)
        return frames

    def user_stack(self, stack_map: Any, stack_id: int, stack_hash: int,
                   pid: int) -> list[Frame]:
        """A user stack of a ptk_ustack.h key: unwound (a hash in `ustacks`), a
        frame-pointer walk (a hash in `stack_map`, USTACK_LAYOUT 2) or an id
        in a build-id stack map. A frame-pointer walk where the program
        unwinds by CFI (a process not loaded yet) ends in symbols.NOT_LOADED."""
        from .symbols import NOT_LOADED
        if stack_hash:
            frames = self.unwound(stack_hash, pid)
            if frames:
                if self.symbolizer.walked_by_frame_pointers(stack_hash):
                    frames.append(NOT_LOADED)
                return frames
            frames = self.hashed(stack_map, stack_hash, pid)
        else:
            frames = self.stack(stack_map, stack_id, pid)
        if frames and self.symbolizer.unwinder is not None:
            # the frame-pointer walk of a process the unwinder had not loaded
            frames.append(NOT_LOADED)
        return frames

    def hashed(self, table: Any, stack_hash: int, pid: int) -> list[Frame]:
        """Frames of a frame-pointer walk stored under its hash, leaf first."""
        try:
            value = table[table.Key(stack_hash)]
        except (KeyError, TypeError):
            return []
        return [self.frame(entry, pid) for entry in value.frames[:value.len]
                if entry.status != _EMPTY]

    def stack(self, stack_map: Any, stack_id: int, pid: int) -> list[Frame]:
        """Frames of one stored stack, leaf first; [] for a negative (missing) id."""
        if stack_id < 0:
            return []
        try:
            trace = stack_map[stack_map.Key(stack_id)].trace
        except KeyError:
            return []
        frames = []
        for entry in trace:
            if entry.status == _EMPTY:
                break
            frames.append(self.frame(entry, pid))
        return frames

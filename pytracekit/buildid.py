"""User stacks that can be named after their process has exited.

A stack map created with BPF_STACK_TRACE_BUILDID stores each user frame as
(build id of the file, offset in the file) instead of an address, so naming
it needs no /proc/PID/maps: only the file with that build id. Candidates are
the binaries a tool probes, the files mapped by processes it watched, and,
for build ids still unknown, the libraries in the dynamic linker's cache.
Frames the kernel could only record as addresses (no build id: JIT code,
anonymous memory) are named through the process's maps while it lives.
"""
from __future__ import annotations

import os
import struct
import subprocess
from typing import Any, Iterable

from .model import Frame

UNKNOWN = "[unknown]"
_EMPTY, _VALID, _IP = 0, 1, 2      # bpf_stack_build_id.status
_NT_GNU_BUILD_ID = 3
_PT_NOTE = 4


def read_build_id(path: str) -> bytes | None:
    """The GNU build id of a 64-bit little-endian ELF file, from its PT_NOTE segments."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", head, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for i in range(phnum):
                p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from(
                    "<IIQQQQ", table, i * phentsize)
                if p_type != _PT_NOTE:
                    continue
                f.seek(p_offset)
                found = _build_id_in_notes(f.read(min(p_filesz, 1 << 16)))
                if found:
                    return found
    except OSError:
        return None
    return None


def _build_id_in_notes(notes: bytes) -> bytes | None:
    pos = 0
    while pos + 12 <= len(notes):
        namesz, descsz, ntype = struct.unpack_from("<III", notes, pos)
        pos += 12
        name_end = pos + ((namesz + 3) & ~3)
        desc = notes[name_end:name_end + descsz]
        if ntype == _NT_GNU_BUILD_ID and notes[pos:pos + namesz].rstrip(b"\0") == b"GNU":
            return desc
        pos = name_end + ((descsz + 3) & ~3)
    return None


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
    try:
        text = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.rsplit("=>", 1)[1].strip() for line in text.splitlines() if "=>" in line})


class BuildIdSymbolizer:
    """Names frames of a BPF_STACK_TRACE_BUILDID map; counts the ones it cannot."""

    def __init__(self, *, show_offset: bool = False) -> None:
        self.show_offset = show_offset
        self.modules: dict[bytes, str] = {}     # build id -> path
        self._seen_paths: set[str] = set()
        self._searched_cache = False
        self._cache: dict[tuple, Frame] = {}
        self.unknown_frames = 0

    def add_files(self, paths: Iterable[str]) -> None:
        import bcc
        for path in paths:
            if path in self._seen_paths:
                continue
            self._seen_paths.add(path)
            build_id = read_build_id(path)
            if build_id:
                build_id = build_id.ljust(20, b"\0")[:20]   # as the kernel stores it
            if build_id and build_id not in self.modules:
                self.modules[build_id] = path
                # BPF.add_module(path) encodes as UTF-8 and print()s its failure
                # to stdout (a path that is not UTF-8): hand BCC the path's bytes.
                bcc.lib.bcc_buildsymcache_add_module(bcc.BPF._bsymcache, os.fsencode(path))

    def remember(self, pids: Iterable[int]) -> None:
        """While these processes live: note the files they map (their build ids
        name frames after the processes exit) and snapshot their maps in BCC's
        per-process symbol cache (for frames the kernel could only record as
        addresses; BCC reads /proc/PID/maps once, when that cache is made). A
        gone process, or a zombie (empty maps), keeps its last snapshot."""
        import bcc
        for pid in pids:
            if pid <= 0 or not _has_maps(pid):
                continue
            bcc.BPF._sym_caches.pop(pid, None)
            bcc.BPF._sym_cache(pid)
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
        key = (entry.status, build_id, entry.offset, pid if entry.status == _IP else 0)
        frame = self._cache.get(key)
        if frame is None:
            frame = self._resolve(entry, build_id, pid)
            self._cache[key] = frame
        if frame.unknown:
            self.unknown_frames += 1
        return frame

    def _resolve(self, entry: Any, build_id: bytes, pid: int) -> Frame:
        import bcc
        if entry.status == _VALID and self._find(build_id):
            raw = bcc.BPF.sym(entry, -1, show_offset=self.show_offset)
            module = os.path.basename(self.modules.get(build_id, ""))
        elif entry.status == _IP and _bcc_may_resolve(pid):
            raw = bcc.BPF.sym(entry.offset, pid, show_offset=self.show_offset)
            module = ""
        else:
            raw = b""
            module = ""
        name = raw.decode(errors="replace") if raw else ""
        if not name or name.startswith("[unknown]"):
            name = UNKNOWN
        return Frame(name, "user", module, entry.offset)

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


def _bcc_may_resolve(pid: int) -> bool:
    """See symbols.UserSymbols.bcc_may_resolve: BCC reads perf maps unchecked."""
    from .symbols import bcc_perf_map_path, perf_map_absent_or_trusted, process_uid
    return perf_map_absent_or_trusted(bcc_perf_map_path(pid), process_uid(pid))

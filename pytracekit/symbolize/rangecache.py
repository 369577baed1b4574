"""Function ranges of a file (elfsyms._function_ranges) kept on disk, by what
they are made of: naming python3's frames read its .dynsym, PLT and .eh_frame
(its function bounds) in ~50 ms of Python at every run, at the end of a
profile or in its first seconds; the packed ranges load in ~2 ms.

The key is the file's build id, its size and section table (a stripped copy
has the build id of the unstripped one, not its .symtab), and which separate
debug files exist for it, with their sizes and times (installing a -dbgsym
package names more). A file without a build id is read each time. The cache
lives with the header cache (root's: /var/cache/pytracekit/ranges) under its
ownership rules (headers.read_trusted)."""
from __future__ import annotations

import array
import os
import struct
from pathlib import Path
from typing import Any, Callable

from ..digest import sha256

FORMAT = b"pytracekit ranges 1\n"
ENTRIES_KEPT = 512   # past it, the oldest written go (each a few to 200 KB)
_HEADER = struct.Struct("<QQQ")   # ranges, bytes of names, bytes of sources


def cache_key(image: Any, debug_candidates: Callable[[str], list]) -> str | None:
    """`debug_candidates(build_id)`: where its separate debug file may be."""
    build_id = image.build_id() if image is not None else ""
    if not build_id:
        return None
    digest = sha256(FORMAT + build_id.encode())
    digest.update(repr((len(image.data), [(s.name, s.offset, s.size) for s in image.sections]))
                  .encode())
    for candidate in debug_candidates(build_id):
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        digest.update(f"{candidate} {st.st_size} {st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:40]


def cache_dir() -> Path:
    from ..kernel.headers import cache_root
    return cache_root() / "ranges"


def packed(ranges: tuple) -> bytes:
    starts, ends, names, sources = ranges
    name_bytes = "\n".join(names).encode(errors="surrogateescape")
    source_bytes = "\n".join(sources).encode(errors="surrogateescape")
    return b"".join([FORMAT, _HEADER.pack(len(starts), len(name_bytes), len(source_bytes)),
                     array.array("Q", starts).tobytes(), array.array("Q", ends).tobytes(),
                     name_bytes, source_bytes])


def unpacked(data: bytes) -> tuple | None:
    if not data.startswith(FORMAT):
        return None
    at = len(FORMAT)
    try:
        count, names_size, sources_size = _HEADER.unpack_from(data, at)
    except struct.error:
        return None
    at += _HEADER.size
    if len(data) != at + 16 * count + names_size + sources_size:
        return None
    starts, ends = array.array("Q"), array.array("Q")
    starts.frombytes(data[at:at + 8 * count])
    ends.frombytes(data[at + 8 * count:at + 16 * count])
    at += 16 * count
    names = data[at:at + names_size].decode(errors="surrogateescape").split("\n") \
        if count else []
    sources_text = data[at + names_size:].decode(errors="surrogateescape")
    if len(names) != count:
        return None
    # lists, as _function_ranges makes them (lookups index them by the million)
    return starts.tolist(), ends.tolist(), names, sources_text.split("\n") if sources_text else []


def cached_function_ranges(path: str, image: Any, compute: Callable[[str, Any], tuple],
                           debug_candidates: Callable[[str], list]) -> tuple:
    """compute(path, image), through the cache when the file has a build id."""
    key = cache_key(image, debug_candidates) if image is not None else None
    if key is None:
        return compute(path, image)
    from ..kernel.headers import read_trusted
    entry = cache_dir() / f"{key}.ranges"
    data = read_trusted(entry)
    ranges = unpacked(data) if data else None
    if ranges is not None:
        return ranges
    ranges = compute(path, image)
    if any("\n" in n for n in ranges[2]):   # a name the format cannot hold: not kept
        return ranges
    from ..kernel.headers import write_cache_file
    if write_cache_file(entry, packed(ranges)):   # else read from the file each time
        _bound(entry.parent)
    return ranges


def _bound(directory: Path) -> None:
    """The oldest entries past ENTRIES_KEPT removed (another run may be removing
    them too: what is gone already is skipped)."""
    try:
        with os.scandir(directory) as listing:
            entries = [e for e in listing if e.name.endswith(".ranges")]
        if len(entries) <= ENTRIES_KEPT:
            return
        entries.sort(key=lambda e: e.stat(follow_symlinks=False).st_mtime_ns)
    except OSError:
        return
    for old in entries[:len(entries) - ENTRIES_KEPT]:
        try:
            os.unlink(old.path)
        except OSError:
            pass

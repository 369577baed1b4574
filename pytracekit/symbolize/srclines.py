"""Source lines of a function's instructions: the DWARF line table of its file
(or of its separate debug file) read with pyelftools, and the source text.

Only the compilation unit holding the function is decoded (found through
.debug_aranges), so a large binary with DWARF costs one unit's line program.
Source files come from the line table's paths (relative ones against the
unit's DW_AT_comp_dir); they are only read and printed, never interpreted.
"""
from __future__ import annotations

import bisect
import os
import stat
from dataclasses import dataclass

from .elfsyms import debug_file_candidates, load_image
from ..textsafe import printable

MAX_SOURCE_BYTES = 64 << 20   # a source file larger than this is not read


@dataclass(frozen=True)
class Place:
    """A source line: the file's path as the line table gives it, and its number."""
    file: str
    line: int


def dwarf_file(path: str, build_id: str) -> str | None:
    """The file holding `path`'s line table: itself, else its separate debug
    file (by build id or .gnu_debuglink) when that is of the same build."""
    image = load_image(path)
    if image is None:
        return None
    if image.section(".debug_line") and image.section(".debug_info"):
        return path
    for candidate in debug_file_candidates(path, build_id, image.debuglink()):
        debug = load_image(candidate)
        if debug is None or not debug.section(".debug_line"):
            continue
        if build_id and debug.build_id() and debug.build_id() != build_id:
            continue   # a stale debug file of another build
        return str(candidate)
    return None


class LineTable:
    """Address -> Place over [start, end) of one function."""

    def __init__(self, rows: list[tuple[int, Place | None]]) -> None:
        self.addresses = [a for a, _ in rows]
        self.places = [p for _, p in rows]

    def __bool__(self) -> bool:
        return bool(self.addresses)

    def place(self, vaddr: int) -> Place | None:
        i = bisect.bisect_right(self.addresses, vaddr) - 1
        return self.places[i] if i >= 0 else None


def line_table(path: str, start: int, end: int) -> LineTable:
    """The line table rows covering [start, end) in the DWARF file `path`
    (empty when it has none for that range or cannot be read)."""
    from elftools.common.exceptions import ELFError, DWARFError
    from elftools.elf.elffile import ELFFile
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False, follow_links=False)
            for cu in _units_at(dwarf, start):
                rows = _rows(dwarf, cu, start, end)
                if rows:
                    return LineTable(rows)
    except (OSError, ELFError, DWARFError, KeyError, IndexError, ValueError, AssertionError):
        pass   # unreadable or malformed DWARF: no lines, the caller says so
    return LineTable([])


def _units_at(dwarf, vaddr: int):
    """The compilation unit .debug_aranges names for `vaddr`; without aranges,
    every unit (a slow walk, only for files built without them)."""
    aranges = dwarf.get_aranges()
    if aranges is not None:
        try:
            offset = aranges.cu_offset_at_addr(vaddr)
        except IndexError:
            offset = None
        if offset is not None:
            yield dwarf.get_CU_at(offset)
            return
    yield from dwarf.iter_CUs()


def _decode(raw) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _rows(dwarf, cu, start: int, end: int) -> list[tuple[int, Place | None]]:
    program = dwarf.line_program_for_CU(cu)
    if program is None:
        return []
    top = cu.get_top_DIE()
    comp_dir = _decode(top.attributes["DW_AT_comp_dir"].value) \
        if "DW_AT_comp_dir" in top.attributes else ""
    version = program.header["version"]
    files = program.header["file_entry"]
    dirs = [_decode(d) for d in program.header["include_directory"]]

    def file_name(index: int) -> str:
        # DWARF 5 numbers files and directories from 0, directory 0 being the
        # compilation directory; earlier versions number them from 1 (0: that
        # directory). Other directories are relative to it.
        entry = files[index if version >= 5 else index - 1]
        d = entry.dir_index
        directory = "" if d == 0 else dirs[d if version >= 5 else d - 1]
        return os.path.normpath(os.path.join(comp_dir, directory, _decode(entry.name)))

    rows: list[tuple[int, bool, Place | None]] = []
    names: dict[int, str] = {}
    for entry in program.get_entries():
        state = entry.state
        if state is None:
            continue
        if state.end_sequence:
            rows.append((state.address, False, None))
            continue
        if state.file not in names:
            try:
                names[state.file] = file_name(state.file)
            except IndexError:
                names[state.file] = f"[file {state.file}]"
        rows.append((state.address, True, Place(names[state.file], state.line)))
    # by address, a sequence's end before another's start at the same address;
    # otherwise in program order: the last row at an address wins
    rows.sort(key=lambda r: (r[0], r[1]))
    table: list[tuple[int, Place | None]] = []
    for address, _, place in rows:
        if table and table[-1][0] == address:
            table[-1] = (address, place)
        else:
            table.append((address, place))
    first = max(bisect.bisect_right([a for a, _ in table], start) - 1, 0)
    covering = [r for r in table[first:] if r[0] < end]
    return covering if any(p is not None for _, p in covering) else []


def read_source(path: str) -> list[str] | None:
    """The lines of a source file (None when it is missing, not a regular file
    or too large: a FIFO planted at that path must not block the run). A
    relative path (a build that mapped its directory away) is never looked up
    from our working directory."""
    if not os.path.isabs(path):
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SOURCE_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_SOURCE_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)
    # "\n" only: str.splitlines also breaks at \f, \v and \x1c.., which compilers do not count
    return data.decode("utf-8", "replace").split("\n")


class Sources:
    """Source text by Place, each file read once; `missing` lists files not found."""

    def __init__(self) -> None:
        self._files: dict[str, list[str] | None] = {}
        self.missing: list[str] = []

    def text(self, place: Place) -> str | None:
        if place.file not in self._files:
            self._files[place.file] = read_source(place.file)
            if self._files[place.file] is None:
                self.missing.append(place.file)
        lines = self._files[place.file]
        if lines is None or not 0 < place.line <= len(lines):
            return None
        return printable(lines[place.line - 1].rstrip("\r").expandtabs(4).strip())

"""One function of a stack profile, annotated: the share of its samples per
source line and per instruction (`perf annotate --stdio`).

Only samples whose leaf frame is the function count: a caller's address is a
return address, and a sample is in the function only when it was running
there. Their instruction addresses are the link-time ones the profile keeps
per leaf (model.Sample.leaf), so a recording annotates on any machine that
has the same build of the binary (checked by build id).
"""
from __future__ import annotations

import bisect
import os
from collections import Counter
from dataclasses import dataclass, field

from . import disasm, srclines
from .elfsyms import ElfImage, ElfSymbols, load_image
from ..errors import NotFoundError
from ..model import ModuleInfo, StackProfile
from .srclines import Place


@dataclass
class Row:
    """One source line or one instruction and its samples."""
    value: int
    percent: float
    place: Place | None = None
    source: str | None = None
    address: int | None = None
    instruction: str | None = None


@dataclass
class Annotation:
    function: str
    module: ModuleInfo
    start: int
    end: int
    value: int            # the function's own samples (leaf)
    total: int            # every sample of the profile
    unit: str
    lines: list[Row] = field(default_factory=list)         # hottest first
    instructions: list[Row] = field(default_factory=list)  # hottest first
    notes: list[str] = field(default_factory=list)


def leaf_samples(profile: StackProfile, function: str,
                 module: str | None = None) -> dict[ModuleInfo, Counter]:
    """Per file, vaddr -> samples of the samples whose leaf is `function`."""
    found: dict[ModuleInfo, Counter] = {}
    unaddressed = 0
    for s in profile.samples:
        leaf = s.stack[-1] if s.stack else None
        if leaf is None or leaf.name != function or leaf.image is None:
            continue
        if module and module not in (leaf.image.path, os.path.basename(leaf.image.path)):
            continue
        if not s.leaf:
            unaddressed += s.value
            continue
        counts = found.setdefault(leaf.image, Counter())
        for vaddr, value in s.leaf:
            counts[vaddr] += value
    if not found and unaddressed:
        raise NotFoundError(f"the samples of {function} carry no instruction addresses "
                            "(recorded by a pytracekit before annotate): record again")
    return found


def _missing(profile: StackProfile, function: str, module: str | None) -> NotFoundError:
    """The error for a function with no samples of its own, naming what has some."""
    callers = sum(s.value for s in profile.samples
                  if any(f.name == function for f in s.stack[:-1]))
    leaves = Counter()
    for s in profile.samples:
        if s.stack and s.stack[-1].image is not None:
            leaves[s.stack[-1].name] += s.value
    hot = ", ".join(name for name, _ in leaves.most_common(3))
    where = f" in {module}" if module else ""
    if callers:
        return NotFoundError(f"{function}{where} has no samples of its own, only in functions "
                             f"it calls ({callers}); annotate one of those"
                             + (f", e.g. {hot}" if hot else ""))
    return NotFoundError(f"no samples in a function named {function}{where}"
                         + (f"; the hottest are: {hot}" if hot else
                            " (the profile has no samples in user code)"))


def function_range(image: ElfImage, path: str, vaddrs: list[int]) -> tuple[int, int]:
    """[start, end) of the symbol holding the sampled addresses (hottest
    first); their own span when no one symbol covers them all. The file's own
    tables first (cheap even for a browser), then every source ElfSymbols reads."""
    low, high = min(vaddrs), max(vaddrs)
    mini = image.minidebuginfo()
    for img in (image, mini) if mini is not None else (image,):
        for start, size, _name in img.functions():
            if start <= low and high < start + size:
                return start, start + size
    syms = ElfSymbols.load(path)
    i = bisect.bisect_right(syms.starts, vaddrs[0]) - 1
    for j in range(i, max(i - 4, -1), -1):   # as ElfSymbols.lookup: nested symbols
        if syms.starts[j] <= low and high < syms.ends[j]:
            return syms.starts[j], syms.ends[j]
    return low, high + 16


def check_build(info: ModuleInfo) -> ElfImage:
    """The file at the recorded path, which must be the build that was sampled."""
    image = load_image(info.path)
    if image is None:
        raise NotFoundError(f"{info.path} is not on this machine (or not readable): annotate "
                            "needs the binary that was sampled"
                            + (f" (build id {info.build_id})" if info.build_id else ""))
    now = image.build_id()
    if info.build_id and now and now != info.build_id:
        raise NotFoundError(f"{info.path} has changed since it was sampled (build id {now}, "
                            f"sampled {info.build_id}): annotate needs that build")
    return image


def annotate(profile: StackProfile, function: str, module: str | None = None) -> Annotation:
    if not profile.total:   # not an error: `--duration 0`, or a process that never ran
        return Annotation(function, ModuleInfo(""), 0, 0, 0, 0, profile.unit,
                          notes=["no samples were taken: nothing to annotate"])
    found = leaf_samples(profile, function, module)
    if not found:
        raise _missing(profile, function, module)
    ranked = sorted(found.items(), key=lambda kv: -sum(kv[1].values()))
    info, counts = ranked[0]
    notes = [f"{function} is also in {other.path} ({sum(c.values())} samples): "
             f"annotating {info.path} (choose with --module)" for other, c in ranked[1:]]
    image = check_build(info)
    hottest = [v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    start, end = function_range(image, info.path, hottest)
    value = sum(counts.values())
    ann = Annotation(function, info, start, end, value, profile.total, profile.unit, notes=notes)

    try:
        code = disasm.disassemble(info.path, start, end, image.read_vaddr(start, end - start))
    except disasm.NoDisassembler as exc:
        code = {}
        ann.notes.append(f"{exc}: instructions shown without their text")
    debug = srclines.dwarf_file(info.path, info.build_id)
    table = srclines.line_table(debug, start, end) if debug else srclines.LineTable([])
    if not table:
        ann.notes.append(f"no line table for {function} in {info.path} (no DWARF: install its "
                         "debug symbols, e.g. the -dbg/-dbgsym package): instructions only")
    sources = srclines.Sources()

    def pct(n: int) -> float:
        return round(100.0 * n / value, 2)

    by_line: Counter = Counter()
    for vaddr, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        place = table.place(vaddr) if table else None
        if place is not None:
            by_line[place] += n
        ann.instructions.append(Row(n, pct(n), place, address=vaddr,
                                    instruction=code.get(vaddr)))
    ann.lines = [Row(n, pct(n), place, sources.text(place))
                 for place, n in sorted(by_line.items(), key=lambda kv: (-kv[1], kv[0].file,
                                                                         kv[0].line))]
    ann.notes += [f"source {path} not found: its lines are shown without their text"
                  for path in sources.missing]
    return ann

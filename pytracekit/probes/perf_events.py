"""The perf events pytracekit names (perf's spelling), parsed from `-e` specs,
and whether this machine can count each one.

A spec is `NAME[:MODIFIERS]` for software/hardware events (`cycles:u`,
`page-faults:k`) or `CATEGORY:EVENT` for a tracepoint (`sched:sched_switch`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from ..errors import NotFoundError, SpecError
from ..kernel import perf

PERF_TYPE_HW_CACHE = 3

SOFTWARE = {  # name: (config, description)
    "cpu-clock": (0, "CPU time by a per-CPU timer, in ns"),
    "task-clock": (1, "CPU time of the task(s) counted, in ns"),
    "page-faults": (2, "page faults"), "faults": (2, "alias of page-faults"),
    "context-switches": (3, "context switches"), "cs": (3, "alias of context-switches"),
    "cpu-migrations": (4, "moves to another CPU"), "migrations": (4, "alias of cpu-migrations"),
    "minor-faults": (5, "page faults served without I/O"),
    "major-faults": (6, "page faults that needed I/O"),
    "alignment-faults": (7, "alignment fix-ups"), "emulation-faults": (8, "emulated instructions"),
    "dummy": (9, "counts nothing (placeholder)"),
}
HARDWARE = {
    "cpu-cycles": (0, "CPU cycles"), "cycles": (0, "alias of cpu-cycles"),
    "instructions": (1, "instructions retired"),
    "cache-references": (2, "cache accesses"), "cache-misses": (3, "cache misses"),
    "branch-instructions": (4, "branches retired"), "branches": (4, "alias of branch-instructions"),
    "branch-misses": (5, "mispredicted branches"), "bus-cycles": (6, "bus cycles"),
    "ref-cycles": (9, "reference cycles (not scaled by frequency)"),
}
# cache id | op << 8 | result << 16 (perf_event_open(2), PERF_TYPE_HW_CACHE)
HW_CACHE = {
    "L1-dcache-loads": (0x00000, "L1 data cache loads"),
    "L1-dcache-load-misses": (0x10000, "L1 data cache load misses"),
    "LLC-loads": (0x00002, "last-level cache loads"),
    "LLC-load-misses": (0x10002, "last-level cache load misses"),
}
TYPES = {"software": perf.PERF_TYPE_SOFTWARE, "hardware": perf.PERF_TYPE_HARDWARE,
         "cache": PERF_TYPE_HW_CACHE}
CATALOGUE = {"software": SOFTWARE, "hardware": HARDWARE, "cache": HW_CACHE}

# perf stat's default set, and what -d adds.
DEFAULT = ["{clock}", "context-switches", "cpu-migrations", "page-faults", "cycles",
           "instructions", "branches", "branch-misses"]
DETAILED = ["L1-dcache-loads", "L1-dcache-load-misses", "LLC-loads", "LLC-load-misses"]


@dataclass(frozen=True)
class EventSpec:
    name: str                 # as the user wrote it, without modifiers
    kind: str                 # software | hardware | cache | tracepoint
    config: int = 0
    user: bool = True         # count user mode
    kernel: bool = True       # count kernel mode
    modifiers: str = ""

    @property
    def label(self) -> str:
        return f"{self.name}:{self.modifiers}" if self.modifiers else self.name

    @property
    def type(self) -> int:
        return TYPES[self.kind]

    @property
    def category(self) -> str:
        return self.name.split(":", 1)[0]

    @property
    def event(self) -> str:
        return self.name.split(":", 1)[1]


def _find(name: str) -> tuple[str, int] | None:
    for kind, table in CATALOGUE.items():
        if name in table:
            return kind, table[name][0]
    return None


def parse(spec: str) -> EventSpec:
    """One event spec -> EventSpec; a SpecError names what is wrong."""
    text = spec.strip()
    if not text or text.startswith(":") or text.endswith(":") or " " in text:
        raise SpecError(f"malformed event '{spec}': expected NAME[:u|k] or CATEGORY:EVENT "
                        "(`pytracekit list` lists them)")
    name, _, mods = text.rpartition(":")
    if name and _find(name) and set(mods) <= set("uk") and mods:
        kind, config = _find(name)
        return EventSpec(name, kind, config, user="u" in mods, kernel="k" in mods,
                         modifiers=mods)
    found = _find(text)
    if found:
        return EventSpec(text, found[0], found[1])
    if text.count(":") == 1:
        return EventSpec(text, "tracepoint")
    raise NotFoundError(f"unknown event '{spec}': not a software, hardware or cache event, "
                        "nor CATEGORY:EVENT (`pytracekit list` lists them)")


def parse_list(values: tuple[str, ...] | list[str]) -> list[EventSpec]:
    """`-e a,b -e c` -> [a, b, c]."""
    out = []
    for value in values:
        for part in value.split(","):
            out.append(parse(part))
    return out


@lru_cache(maxsize=None)
def supported(kind: str, config: int) -> tuple[bool, str]:
    """Can this machine count the event? Proven by opening it on ourselves."""
    try:
        fd = perf.open_counter(TYPES[kind], config, pid=0, cpu=-1)
    except OSError as exc:
        return False, exc.strerror or str(exc)
    os.close(fd)
    return True, ""

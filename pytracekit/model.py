"""The format-neutral result model every renderer consumes.

Tools aggregate in the kernel and turn map contents into these values;
renderers (text, JSON, folded, flame graph, pprof, Prometheus) are pure
functions of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Iterable

from .textsafe import printable


@dataclass
class LossReport:
    """Everything a run failed to record. Printed by every tool."""

    lost_events: int = 0      # events the ring/perf buffer could not take
    stack_errors: int = 0     # stacks that could not be stored
    map_full: int = 0         # updates dropped because a map was full
    unknown_frames: int = 0   # frames symbolization could not name
    unreadable_strings: int = 0   # user strings BPF could not read (not paged in)
    # user stacks stored but not wholly unwound by CFI (bpf/ptk_unwind.h), per sample:
    unwind_fallback: int = 0      # frame-pointer walk: the process was not loaded yet
    unwind_fp_steps: int = 0      # a frame-pointer step inside a module that has CFI
    unwind_incomplete: int = 0    # the walk stopped before the stack's start
    # events the kernel ran none of the tool's probes for: another BPF program
    # was running on that CPU (the programs' recursion_misses; docs/losses.md)
    missed_events: int = 0

    def __add__(self, other: "LossReport") -> "LossReport":
        return LossReport(**{k: v + getattr(other, k) for k, v in self.as_dict().items()})

    @property
    def any(self) -> bool:
        return bool(self.lost_events or self.stack_errors or self.map_full or self.missed_events)

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def log2_slot(value: int) -> int:
    """The log2 bucket of a value, numbered as in bpf/pytracekit.h and BCC."""
    return value.bit_length()


def log2_bounds(slot: int) -> tuple[int, int]:
    """Inclusive [low, high] of a log2 bucket."""
    if slot == 0:
        return 0, 0
    return 1 << (slot - 1), (1 << slot) - 1


@dataclass
class Histogram:
    """A log2 histogram: bucket slot -> count."""

    buckets: dict[int, int] = field(default_factory=dict)
    unit: str = ""            # "usecs", "nsecs", "bytes" ...
    label: str = ""           # what was measured, e.g. a function name

    @property
    def total(self) -> int:
        return sum(self.buckets.values())

    def add(self, value: int, count: int = 1) -> None:
        slot = log2_slot(value)
        self.buckets[slot] = self.buckets.get(slot, 0) + count


@dataclass
class LinearHistogram:
    """A histogram with fixed-width buckets: bucket index -> count."""

    buckets: dict[int, int] = field(default_factory=dict)
    step: int = 1
    unit: str = ""
    label: str = ""

    @property
    def total(self) -> int:
        return sum(self.buckets.values())


@dataclass
class Counts:
    """Named counters, each keyed by a tuple of column values."""

    columns: tuple[str, ...]
    rows: dict[tuple, int] = field(default_factory=dict)
    value_name: str = "COUNT"

    def top(self, n: int | None = None) -> list[tuple[tuple, int]]:
        ordered = sorted(self.rows.items(), key=lambda kv: (-kv[1], kv[0]))
        return ordered if n is None else ordered[:n]


@dataclass(frozen=True)
class ModuleInfo:
    """Where a module's code lies in its file: what pprof needs to symbolize
    its addresses later (start/limit: link-time range of the executable
    PT_LOAD; file_offset: that segment's p_offset)."""

    path: str
    build_id: str = ""
    start: int = 0
    limit: int = 0
    file_offset: int = 0


# Prefixes of unnamed frames besides the frame's own module (see unnamed()).
UNNAMED_PREFIXES = ("[unknown]", "[kernel.kallsyms]", "[anon]")


def unnamed(where: str, offset: int) -> str:
    """The name of a frame no symbol covers: `liblzma.so.5.4.1+0x1692b`
    (module and link-time address), `[kernel.kallsyms]+0x...`, or
    `[unknown]+0xADDR` with no mapping at all. Never one box for two addresses."""
    return f"{where}+{offset:#x}"


@dataclass(frozen=True)
class Frame:
    """One stack frame. kind: user, kernel, process (comm), marker (a separator
    such as '--' between user and kernel), jit. `address` is the address the
    stack held; `vaddr` and `image` (user frames in a file) its link-time
    address and module, for pprof; they do not take part in equality."""

    name: str
    kind: str = "user"
    module: str = ""
    address: int = 0
    vaddr: int = field(default=0, compare=False)
    image: ModuleInfo | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        # Every symbolized name passes here: control characters never reach
        # a terminal or a file (see textsafe).
        if not self.name.isprintable():
            object.__setattr__(self, "name", printable(self.name))
        if not self.module.isprintable():
            object.__setattr__(self, "module", printable(self.module))

    @cached_property   # (kept in the instance's __dict__: not a field, frozen is kept)
    def unknown(self) -> bool:
        """No symbol named it (its name is unnamed()'s): counted as unknown_frames."""
        where, sep, offset = self.name.rpartition("+0x")
        if not sep:
            return self.name == "[unknown]"
        if where != self.module and where not in UNNAMED_PREFIXES and \
                not where.endswith(".ko"):
            return False
        try:
            int(offset, 16)
        except ValueError:
            return False
        return True


@dataclass(frozen=True)
class Sample:
    """A stack (root first) and how much it weighs (samples, ns, count).
    `leaf`: (vaddr, value) pairs of the leaf frame's instructions when
    samples at several addresses of one function were merged into this one
    (stacks.merge_by_name; `annotate` reads them); empty when the leaf frame's
    own vaddr holds the whole value or the leaf is not in a file."""

    stack: tuple[Frame, ...]
    value: int
    pid: int = 0
    tid: int = 0
    comm: str = ""
    leaf: tuple[tuple[int, int], ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.comm.isprintable():
            object.__setattr__(self, "comm", printable(self.comm))


@dataclass(frozen=True)
class SampleEvent:
    """One sample or event of a recording, in time order (`pytracekit script`):
    when, where, which thread, and the aggregated stack it was counted in."""

    time_ns: int         # CLOCK_MONOTONIC, as perf's sample times
    cpu: int
    tid: int
    sample: int          # index of its stack (pid, comm, frames) in StackProfile.samples
    weight: int = 1      # what it added to that stack's value


@dataclass
class StackProfile:
    """Aggregated stacks: the input of folded, flame graph, pprof, speedscope."""

    samples: list[Sample] = field(default_factory=list)
    value_type: str = "samples"      # samples | off_cpu | count | alloc_space
    unit: str = "count"              # count | nanoseconds | microseconds | bytes
    period: int = 0                  # ns per sample for sampling profiles
    duration_ns: int = 0
    loss: LossReport = field(default_factory=LossReport)
    meta: dict[str, str] = field(default_factory=dict)
    # each sample/event (record keeps them); None: only the aggregated stacks exist
    events: "list[SampleEvent] | None" = None

    @property
    def total(self) -> int:
        return sum(s.value for s in self.samples)

    def merged(self) -> "StackProfile":
        """Samples with identical stacks folded into one."""
        acc: dict[tuple[Frame, ...], Sample] = {}
        for s in self.samples:
            prev = acc.get(s.stack)
            acc[s.stack] = s if prev is None else Sample(s.stack, prev.value + s.value,
                                                        prev.pid, prev.tid, prev.comm,
                                                        merged_leaves(prev, s))
        return StackProfile(list(acc.values()), self.value_type, self.unit, self.period,
                            self.duration_ns, self.loss, dict(self.meta))


def leaf_counts(sample: Sample) -> dict[int, int]:
    """vaddr -> value of the sample's leaf instructions ({} when its leaf is not in a file)."""
    if sample.leaf:
        return dict(sample.leaf)
    leaf = sample.stack[-1] if sample.stack else None
    return {leaf.vaddr: sample.value} if leaf is not None and leaf.image is not None else {}


def merged_leaves(*samples: Sample) -> tuple[tuple[int, int], ...]:
    """The leaf pairs of samples merged into one (same leaf function)."""
    acc: dict[int, int] = {}
    for s in samples:
        for vaddr, value in leaf_counts(s).items():
            acc[vaddr] = acc.get(vaddr, 0) + value
    return tuple(sorted(acc.items()))


def frames(names: Iterable[str], kind: str = "user") -> tuple[Frame, ...]:
    return tuple(Frame(n, kind) for n in names)


UNREADABLE = "[unreadable]"   # a user string BPF could not read (bpf/pytracekit.h)

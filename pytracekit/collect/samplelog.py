"""The sample log's user half (bpf/ptk_sample_log.h): `record` keeps every
sample or event, not only the aggregated stacks, for `pytracekit script`.

Each record carries the key its sample was counted under; after the session's
read(), every distinct key is named once with the session's own naming (so it
lands on exactly the stack the aggregate shows) and each record becomes a
SampleEvent pointing at that stack.
"""
from __future__ import annotations

import ctypes
import dataclasses
from typing import Any, Callable

from ..model import Sample, SampleEvent, StackProfile
from . import cstruct
from .stream import CallbackRings

DEFINES = {"SAMPLE_LOG": 1}


_Record = cstruct.struct_layout("ptk_sample_log.h", "ptk_sample_rec").ctype()


def identity(sample: Sample, addresses: bool = False) -> tuple:
    """What tells aggregated stacks apart in every stack tool's read(): names
    (profile merges a function's addresses), or names and addresses for a
    read that keeps them apart."""
    frames = tuple((f.name, f.kind, f.address) if addresses else (f.name, f.kind)
                   for f in sample.stack)
    return (sample.pid, sample.tid, sample.comm, frames)


def _stack_finder(profile: StackProfile) -> Callable[[Sample], "int | None"]:
    """The index of a named key's stack in `profile`: the same addresses
    first, else the same names."""
    exact: dict[tuple, int] = {}
    by_name: dict[tuple, int] = {}
    for i, s in enumerate(profile.samples):
        exact.setdefault(identity(s, True), i)
        by_name.setdefault(identity(s), i)

    def find(sample: Sample) -> "int | None":
        found = exact.get(identity(sample, True))
        return found if found is not None else by_name.get(identity(sample))
    return find


class SampleLog:
    """The `sample_log` ring of a program compiled with DEFINES: records are
    kept raw while the run lasts (the tool's own ring poll consumes them:
    BCC polls all of a program's rings at once)."""

    def __init__(self, prog: Any, divisor: int = 1) -> None:
        self.prog = prog
        self.divisor = divisor    # kernel weights / divisor = the profile's unit (ns -> us)
        self.records: list[bytes] = []
        self.unmatched = 0
        # stack index -> {leaf instruction's vaddr: weight} of its events (annotate)
        self.leaves: dict[int, dict[int, int]] = {}
        self.rings = CallbackRings(prog)
        self.rings.open("sample_log", self._on_record)

    def _on_record(self, _ctx: Any, data: int, _size: int) -> int:
        self.records.append(ctypes.string_at(data, ctypes.sizeof(_Record)))
        return 0

    def drain(self) -> None:
        """What is still in the ring: call before reading the aggregate."""
        self.rings.consume()

    def events(self, profile: StackProfile,
               sample_of: Callable[[Any, int], Sample]) -> list[SampleEvent]:
        """The records as events on `profile`'s stacks; `sample_of(key,
        py_stack_id)` names a key as the session's read() does. A record whose
        stack the aggregate lacks (its map was full) is counted in `unmatched`."""
        find = _stack_finder(profile)
        named: dict[bytes, tuple[int | None, int | None]] = {}   # -> (stack, leaf vaddr)
        out = []
        self.leaves = {}
        size = ctypes.sizeof(_Record)
        key_at = _Record.py_stack_id.offset   # py_stack_id + key name the stack
        for raw in self.records:
            rec = _Record.from_buffer_copy(raw[:size])
            ident = raw[key_at:key_at + 8] + raw[_Record.key.offset:]
            if ident not in named:
                sample = sample_of(rec.key, rec.py_stack_id)
                leaf = sample.stack[-1] if sample.stack else None
                named[ident] = (find(sample), leaf.vaddr if leaf is not None
                                and leaf.image is not None else None)
            where, vaddr = named[ident]
            if where is None:
                self.unmatched += 1
                continue
            weight = (rec.weight + self.divisor // 2) // self.divisor
            out.append(SampleEvent(rec.time_ns, rec.cpu, rec.tid, where, weight))
            if vaddr is not None:
                counts = self.leaves.setdefault(where, {})
                counts[vaddr] = counts.get(vaddr, 0) + weight
        out.sort(key=lambda e: e.time_ns)
        return out


def counted_by_events(profile: StackProfile, events: list[SampleEvent],
                      leaves: dict[int, dict[int, int]] | None = None) -> StackProfile:
    """`profile` with each stack's value the sum of its events' weights (stacks
    without events left out) and `events` on it: the aggregate says exactly
    what the events say. The BPF counts go on while user space names stacks
    after the run, and a record the ring could not take is counted in
    lost_events, as perf counts lost samples. `leaves` (SampleLog.leaves):
    where a Sample keeps its leaf instructions' counts (`leaf`, for annotate),
    they are recounted from the events too."""
    weights: dict[int, int] = {}
    for e in events:
        weights[e.sample] = weights.get(e.sample, 0) + e.weight
    kept = [i for i in range(len(profile.samples)) if i in weights]
    where = {old: new for new, old in enumerate(kept)}
    has_leaf = leaves is not None and "leaf" in {f.name for f in dataclasses.fields(Sample)}

    def recounted(i: int) -> Sample:
        if not has_leaf:
            return dataclasses.replace(profile.samples[i], value=weights[i])
        leaf = tuple(sorted((leaves or {}).get(i, {}).items()))
        return dataclasses.replace(profile.samples[i], value=weights[i], leaf=leaf)
    samples = [recounted(i) for i in kept]
    moved = [dataclasses.replace(e, sample=where[e.sample]) for e in events]
    return StackProfile(samples, profile.value_type, profile.unit, profile.period,
                        profile.duration_ns, profile.loss, dict(profile.meta), moved)

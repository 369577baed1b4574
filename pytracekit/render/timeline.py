"""CPUs, disks and tasks over time, built from timehist's records (the
per-run Switch and the block issue/complete events of schedtimes): the model
`render.timechart_svg` draws. Pure: records in, a Timeline out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..collect.schedtimes import BlockEvent, Switch

STATES = ("running", "runnable", "sleeping", "io")
# How a wait that began in a state is drawn: D (uninterruptible) is perf
# timechart's "blocked on I/O"; R, preempted, waits runnable.
_WAIT_KIND = {"R": "runnable", "D": "io"}


def wait_kind(letter: str | None) -> str:
    return _WAIT_KIND.get(letter or "", "sleeping")


@dataclass(frozen=True)
class Span:
    start_ns: int
    end_ns: int
    kind: str           # a STATES name for tasks; the task's label on a CPU; "io" on a disk
    label: str = ""     # the tooltip's extra words

    @property
    def ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass
class Row:
    name: str
    spans: list[Span] = field(default_factory=list)


@dataclass
class Timeline:
    start_ns: int
    end_ns: int
    cpus: list[Row]
    disks: list[Row]
    tasks: list[Row]

    def totals(self, row: Row) -> dict[str, int]:
        sums = dict.fromkeys(STATES, 0)
        for span in row.spans:
            sums[span.kind] = sums.get(span.kind, 0) + span.ns
        return sums


def task_spans(s: Switch) -> list[Span]:
    """A run and the wait before it: [sleep or I/O][runnable][running]."""
    run_start = s.ts_ns - s.run_ns
    ready = run_start - s.delay_ns
    spans = []
    if s.wait_ns > s.delay_ns:
        spans.append(Span(run_start - s.wait_ns, ready, wait_kind(s.wait_state)))
    if s.delay_ns:
        spans.append(Span(ready, run_start, "runnable"))
    spans.append(Span(run_start, s.ts_ns, "running", f"cpu {s.cpu}"))
    return spans


def build(records: Iterable[Switch | BlockEvent], start_ns: int, end_ns: int,
          dev_name: Callable[[int], str] = str) -> Timeline:
    tasks: dict[int, Row] = {}
    last: dict[int, Switch] = {}
    cpus: dict[int, Row] = {}
    disks: dict[int, Row] = {}
    issued: dict[tuple[int, int], BlockEvent] = {}
    for r in records:
        if isinstance(r, BlockEvent):
            if not r.complete:
                issued[(r.dev, r.sector)] = r
            elif (r.dev, r.sector) in issued:
                begin = issued.pop((r.dev, r.sector))
                disks.setdefault(r.dev, Row(dev_name(r.dev))).spans.append(
                    Span(begin.ts_ns, r.ts_ns, "io", f"sector {r.sector}, {begin.bytes} bytes"))
            continue
        name = f"{r.comm}[{r.tid}]" if r.tid == r.pid else f"{r.comm}[{r.tid}/{r.pid}]"
        row = tasks.setdefault(r.tid, Row(name))
        row.name = name                       # the latest name (after an exec)
        row.spans.extend(task_spans(r))
        last[r.tid] = r
        cpus.setdefault(r.cpu, Row(f"CPU {r.cpu}")).spans.append(
            Span(r.run_start_ns, r.ts_ns, name))
    for begin in issued.values():             # still in flight at the end
        disks.setdefault(begin.dev, Row(dev_name(begin.dev))).spans.append(
            Span(begin.ts_ns, end_ns, "io", f"sector {begin.sector}, {begin.bytes} bytes"))
    for tid, s in last.items():               # the state each task was left in
        if s.state not in ("X", "Z") and s.ts_ns < end_ns:
            tasks[tid].spans.append(Span(s.ts_ns, end_ns, wait_kind(s.state)))
    return Timeline(start_ns, end_ns, [cpus[c] for c in sorted(cpus)],
                    [disks[d] for d in sorted(disks)], list(tasks.values()))

"""Folded stacks: `comm;root;...;leaf count`, one line per stack (flamegraph.pl input).

The format carries names only, so frame kinds are recovered from the
annotations flamegraph.pl knows (`_[k]` kernel, `_[j]` JIT, `_[i]` inlined)
and from position (the first name is the process when `comm_first`).
"""
from __future__ import annotations

import re

from ..errors import UsageError
from ..model import Frame, Sample, StackProfile

MARKER_NAMES = {"--", "-"}          # BCC's user/kernel delimiter (profile -d)
_PID_SUFFIX = re.compile(r"^(.*)-(\d+)$")


def frame_kind(name: str) -> str:
    """The kind a folded name implies: its annotation, else user."""
    if name.endswith("_[k]"):
        return "kernel"
    if name.endswith("_[j]"):
        return "jit"
    if name in MARKER_NAMES:
        return "marker"
    return "user"


def clean_name(name: str) -> str:
    """A name that cannot break a folded line: ';' separates frames, a newline ends it."""
    return (name or "[unknown]").replace(";", ":").replace("\n", " ").replace("\r", " ")


def process_name(sample: Sample, include_pid: bool) -> str:
    comm = sample.stack[0].name if sample.stack and sample.stack[0].kind == "process" \
        else sample.comm
    return f"{comm}-{sample.pid}" if include_pid and comm else comm


def stack_names(sample: Sample, *, include_pid: bool = False) -> list[str]:
    """The names of one sample's folded line, root first, process name first if known."""
    frames = sample.stack
    has_process = bool(frames) and frames[0].kind == "process"
    names = [f.name for f in (frames[1:] if has_process else frames)]
    comm = process_name(sample, include_pid)
    return [comm] + names if comm else names


def folded(profile: StackProfile, *, include_pid: bool = False) -> str:
    """Folded stacks, one line per distinct stack, sorted; ends with a newline
    unless empty. A process frame or the sample's comm comes first (`comm-pid`
    with include_pid, as stackcollapse-perf.pl --pid writes it)."""
    totals: dict[str, int] = {}
    clean: dict[str, str] = {}   # names repeat across stacks: each cleaned once
    for sample in profile.samples:
        names = stack_names(sample, include_pid=include_pid)
        line = ";".join([clean.get(n) or clean.setdefault(n, clean_name(n)) for n in names])
        totals[line] = totals.get(line, 0) + sample.value
    return "".join(f"{line} {value}\n" for line, value in sorted(totals.items()))


def parse_folded(text: str, *, include_pid: bool = False, comm_first: bool = True,
                 value_type: str = "samples", unit: str = "count") -> StackProfile:
    """Folded stacks back into a StackProfile. The first name becomes a process
    frame (and the sample's comm) when comm_first; with include_pid a trailing
    `-PID` on it becomes the sample's pid. Blank lines and `#` comments are skipped."""
    samples: list[Sample] = []
    known: dict[str, Frame] = {}   # one Frame per name: big files repeat names a lot
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        stack_text, _, count_text = line.rpartition(" ")
        try:
            value = int(count_text)
        except ValueError:
            value = None
        if not stack_text or value is None or value < 0:
            raise UsageError(f"folded stacks line {number}: expected 'frame;frame;... COUNT', "
                             f"got {raw[:80]!r}")
        names = stack_text.split(";")
        comm, pid = "", 0
        frames = [known.get(n) or known.setdefault(n, Frame(n, frame_kind(n))) for n in names]
        if comm_first:
            comm = names[0]
            if include_pid and (m := _PID_SUFFIX.match(comm)):
                comm, pid = m.group(1), int(m.group(2))
            frames[0] = Frame(comm, "process")
        samples.append(Sample(tuple(frames), value, pid=pid, comm=comm))
    return StackProfile(samples=samples, value_type=value_type, unit=unit)

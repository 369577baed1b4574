"""script: every sample or event of a recording, one block each, in time
order (`perf script`): the sample's line, then its stack leaf first."""
from __future__ import annotations

from typing import Any, Iterator

import click

from ..cli import options
from ..collect import recording
from ..errors import UsageError
from ..model import Frame, SampleEvent, StackProfile

DRY_RUN_ARGS: list[str] = []
LOADS_BPF = False   # reads files only: no --ebpf program, nothing to dry-run
KERNEL_MODULE = "[kernel.kallsyms]"   # perf's name for the kernel's frames


@click.command("script", context_settings=options.TOOL_CONTEXT)
@click.option("-i", "--input", "path", metavar="FILE", required=True,
              help="Recording to read (written by `pytracekit record`).")
@options.output_options()
@options.standard
def command(path, out) -> None:
    """Print every sample or event of a recording with its stack (`perf script`).

    \b
    Examples:
      pytracekit script -i spin.ptk           # one block per sample, stack leaf first
      pytracekit script -i io.ptk --json      # one JSON object per sample
    """
    profile = recording.load(path)
    if profile.events is None:
        raise UsageError(f"{path} holds aggregated stacks only, not each sample (recorded "
                         f"before record kept samples): `pytracekit report {path}` reads it; "
                         "record it again to script it")
    event = profile.meta.get("event", "cpu-clock")
    for e in profile.events:
        out.emit(text=lambda: sample_text(profile, e, event),
                 json=lambda: sample_obj(profile, e, event), flush=False)
    out.flush()


def period(profile: StackProfile, e: SampleEvent) -> int:
    """perf's period: ns of CPU time for a timed sample, else the event's weight
    (1 for an event, microseconds blocked for an off-CPU sample)."""
    return e.weight * profile.period if profile.period else e.weight


def frames_leaf_first(profile: StackProfile, e: SampleEvent) -> Iterator[Frame]:
    """The sample's code frames, innermost first (no process name, no markers)."""
    return (f for f in reversed(profile.samples[e.sample].stack)
            if f.kind not in ("process", "marker"))


def module_of(frame: Frame) -> str:
    if frame.kind == "kernel":
        return KERNEL_MODULE
    if frame.image is not None:
        return frame.image.path
    return frame.module or "[unknown]"


def address_of(frame: Frame) -> int:
    """The frame's runtime address when kept, else its address in its file (on-CPU
    recordings merge a function's samples, keeping one address per function)."""
    return frame.address or frame.vaddr


def time_text(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000 // 1000:06d}"


def sample_text(profile: StackProfile, e: SampleEvent, event: str) -> str:
    """perf script's default block: `comm pid/tid [cpu] time: period event:`,
    then `\\t addr symbol (module)` per frame, leaf first, then a blank line."""
    s = profile.samples[e.sample]
    lines = [f"{s.comm:>16} {s.pid:>7}/{e.tid:<7} [{e.cpu:03d}] {time_text(e.time_ns)}: "
             f"{period(profile, e):>10} {event}:"]
    lines += [f"\t{address_of(f):>16x} {f.name} ({module_of(f)})"
              for f in frames_leaf_first(profile, e)]
    return "\n".join(lines) + "\n"


def sample_obj(profile: StackProfile, e: SampleEvent, event: str) -> dict[str, Any]:
    """--json: one sample (script.schema.json)."""
    s = profile.samples[e.sample]
    return {"type": "sample", "comm": s.comm, "pid": s.pid, "tid": e.tid, "cpu": e.cpu,
            "time_ns": e.time_ns, "period": period(profile, e), "event": event,
            "frames": [{"address": address_of(f), "symbol": f.name, "module": module_of(f),
                        "kind": f.kind} for f in frames_leaf_first(profile, e)]}

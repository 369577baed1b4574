"""speedscope's file format (https://www.speedscope.app/file-format-schema.json).

One "sampled" profile: each distinct stack is a sample (frame indices, root
first) with its value as the weight. A frame's `file` says where it came
from: the kind's pseudo-module ([kernel.kallsyms], [process], [jit],
[marker], as in the pprof output) or the user frame's module.
"""
from __future__ import annotations

import json

from .. import __version__
from ..errors import UsageError
from ..model import Frame, Sample, StackProfile
from .pprof import KIND_MAPPINGS, MAPPING_KINDS

SCHEMA = "https://www.speedscope.app/file-format-schema.json"
UNITS = {"count": "none", "nanoseconds": "nanoseconds", "microseconds": "microseconds",
         "milliseconds": "milliseconds", "seconds": "seconds", "bytes": "bytes"}


def to_speedscope(profile: StackProfile, *, name: str = "pytracekit") -> str:
    frames: list[dict] = []
    index: dict[tuple[str, str], int] = {}
    samples, weights = [], []
    for sample in profile.merged().samples:
        stack = []
        for frame in sample.stack:
            source = KIND_MAPPINGS.get(frame.kind, frame.module)
            key = (frame.name, source)
            if key not in index:
                index[key] = len(frames)
                frames.append({"name": frame.name, "file": source} if source
                              else {"name": frame.name})
            stack.append(index[key])
        samples.append(stack)
        weights.append(sample.value)
    doc = {
        "$schema": SCHEMA,
        "exporter": f"pytracekit@{__version__}",
        "name": name,
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": [{
            "type": "sampled", "name": profile.meta.get("title", name),
            "unit": UNITS.get(profile.unit, "none"),
            "startValue": 0, "endValue": sum(weights),
            "samples": samples, "weights": weights,
        }],
    }
    return json.dumps(doc, separators=(",", ":"))


def from_speedscope(text: str) -> StackProfile:
    """The sampled profiles of a speedscope file, merged into one StackProfile."""
    try:
        doc = json.loads(text)
        frames = [Frame(f["name"], MAPPING_KINDS.get(f.get("file", ""), "user"),
                        "" if f.get("file", "") in MAPPING_KINDS else f.get("file", ""))
                  for f in doc["shared"]["frames"]]
        profiles = [p for p in doc["profiles"] if p.get("type") == "sampled"]
        units = {v: k for k, v in UNITS.items()}
        result = StackProfile(unit=units.get(profiles[0]["unit"], "count") if profiles else "count")
        for prof in profiles:
            for stack, weight in zip(prof["samples"], prof["weights"]):
                path = tuple(frames[i] for i in stack)
                comm = path[0].name if path and path[0].kind == "process" else ""
                result.samples.append(Sample(path, int(weight), comm=comm))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"not a speedscope sampled profile: {type(exc).__name__}: {exc}") \
            from None
    return result

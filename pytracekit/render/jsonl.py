"""JSON lines: one object per line, the shapes shared by every tool's schema."""
from __future__ import annotations

import json
from typing import Any

from ..model import Counts, Histogram, LossReport, StackProfile, log2_bounds


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=False)


def histogram_obj(hist: Histogram) -> dict[str, Any]:
    buckets = []
    for slot in sorted(hist.buckets):
        low, high = log2_bounds(slot)
        buckets.append({"low": low, "high": high, "count": hist.buckets[slot]})
    return {"type": "histogram", "label": hist.label, "unit": hist.unit,
            "total": hist.total, "buckets": buckets}


def counts_objs(counts: Counts) -> list[dict[str, Any]]:
    return [{"type": "count", **dict(zip(counts.columns, key)), "count": n}
            for key, n in counts.top()]


def loss_obj(loss: LossReport) -> dict[str, Any]:
    return {"type": "loss", **loss.as_dict()}


def stacks_objs(profile: StackProfile) -> list[dict[str, Any]]:
    return [{"type": "stack", "pid": s.pid, "comm": s.comm, "value": s.value,
             "frames": [{"name": f.name, "kind": f.kind, "module": f.module} for f in s.stack]}
            for s in profile.samples]


def profile_obj(tool: str, profile: StackProfile) -> dict[str, Any]:
    """The line before a profile's stacks: what they measure and how."""
    return {"type": "profile", "tool": tool, "value_type": profile.value_type,
            "unit": profile.unit, "period": profile.period,
            "duration_ns": profile.duration_ns, "total": profile.total,
            "meta": dict(profile.meta)}

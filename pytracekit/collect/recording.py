"""The recording file `pytracekit record` writes and `report`/`diff` read.

Format "pytracekit-recording", version 1: gzip-compressed JSON lines.
  line 1  {"format": "pytracekit-recording", "version": 1, "tool": ..., "value_type": ...,
           "unit": ..., "period": ns per sample, "duration_ns": ..., "created": ISO 8601,
           "host": ..., "kernel": ..., "meta": {str: str}, "loss": {lost_events, stack_errors,
           map_full, unknown_frames}, "samples": N}
  then N  {"value": int, "pid": int, "tid": int, "comm": str,
           "frames": [[name, kind, module], ...],       (root first, already symbolized)
           "at": [[address, vaddr, file], ...]}         (per frame; file: index into the
                                                         header's "files", -1 for none)
  header "files": [{path, build_id, start, limit, file_offset}] (model.ModuleInfo): what
  pprof needs to symbolize a file's frames later. "files"/"at" are optional.
  A sample whose leaf frame is in a file may add "leaf": [[vaddr, value], ...]: the
  link-time addresses of the leaf's instructions and their share of "value" (stacks
  merged by name have one "at" per frame; `pytracekit annotate` reads these).
  Each sample/event (`pytracekit script`), when the recording kept them: the
  header's "events": their number and "time_base_ns": the first one's
  CLOCK_MONOTONIC time; a stack line's "events": [[ns after time_base_ns, cpu,
  tid(, weight if not 1)], ...], those counted in that line's stack. Without
  "events" in the header the recording has aggregated stacks only.
Readers accept any version <= theirs and ignore keys they do not know, so
version 1 files stay readable; a change that breaks that bumps the version.
"""
from __future__ import annotations

import dataclasses
import datetime
import gzip
import json
import os
from typing import Any

from .. import outfile
from ..errors import NotFoundError, UsageError
from ..model import Frame, LossReport, ModuleInfo, Sample, SampleEvent, StackProfile

FORMAT = "pytracekit-recording"
VERSION = 1


def header(profile: StackProfile, tool: str) -> dict[str, Any]:
    uname = os.uname()
    return {"format": FORMAT, "version": VERSION, "tool": tool,
            "value_type": profile.value_type, "unit": profile.unit, "period": profile.period,
            "duration_ns": profile.duration_ns,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host": uname.nodename, "kernel": uname.release, "meta": dict(profile.meta),
            "loss": profile.loss.as_dict(), "samples": len(profile.samples)}


def save(profile: StackProfile, path: str, tool: str = "record") -> None:
    files: dict[ModuleInfo, int] = {}
    for s in profile.samples:
        for f in s.stack:
            if f.image is not None:
                files.setdefault(f.image, len(files))
    head = header(profile, tool)
    head["files"] = [dataclasses.asdict(info) for info in files]
    per_stack = _events_per_stack(profile, head)
    lines = [json.dumps(head, separators=(",", ":"))]
    for i, s in enumerate(profile.samples):
        at = [[f.address, f.vaddr, files[f.image] if f.image is not None else -1]
              for f in s.stack]
        line = {"value": s.value, "pid": s.pid, "tid": s.tid, "comm": s.comm,
                "frames": [[f.name, f.kind, f.module] for f in s.stack], "at": at}
        if s.leaf:
            line["leaf"] = [list(pair) for pair in s.leaf]
        if per_stack is not None:
            line["events"] = per_stack[i]
        lines.append(json.dumps(line, separators=(",", ":")))
    data = gzip.compress(("\n".join(lines) + "\n").encode("utf-8"))
    outfile.write_file(path, data)


def _events_per_stack(profile: StackProfile, head: dict) -> list[list[list[int]]] | None:
    """Each stack's events as compact rows; notes their number and time base
    in the header (None: the profile has no events)."""
    if profile.events is None:
        return None
    base = min((e.time_ns for e in profile.events), default=0)
    head["events"], head["time_base_ns"] = len(profile.events), base
    rows: list[list[list[int]]] = [[] for _ in profile.samples]
    for e in profile.events:
        row = [e.time_ns - base, e.cpu, e.tid]
        rows[e.sample].append(row + [e.weight] if e.weight != 1 else row)
    return rows


def load(path: str) -> StackProfile:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise NotFoundError(f"no recording {path} (make one with `pytracekit record -o {path}`)") \
            from None
    except (OSError, EOFError, UnicodeDecodeError):
        raise UsageError(f"{path} is not a pytracekit recording (expected gzip JSON lines "
                         "written by `pytracekit record`)") from None
    try:
        head = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        head = {}
    if head.get("format") != FORMAT:
        raise UsageError(f"{path} is not a pytracekit recording (no {FORMAT} header)")
    if int(head.get("version", 0)) > VERSION:
        raise UsageError(f"{path} is recording format version {head['version']}; this "
                         f"pytracekit reads up to version {VERSION}: upgrade it")
    try:
        files = [ModuleInfo(str(f["path"]), str(f.get("build_id", "")), int(f.get("start", 0)),
                            int(f.get("limit", 0)), int(f.get("file_offset", 0)))
                 for f in head.get("files", [])]
    except (KeyError, TypeError, ValueError, AttributeError):
        raise UsageError(f"{path}: the header's files are not a pytracekit recording's") \
            from None
    samples = []
    events: list[SampleEvent] | None = [] if "events" in head else None
    base = int(head.get("time_base_ns", 0)) if events is not None else 0
    for number, line in enumerate(lines[1:], 2):
        try:
            obj = json.loads(line)
            at = obj.get("at") or []
            stack = tuple(_frame(n, k, m, at[i] if i < len(at) else None, files)
                          for i, (n, k, m) in enumerate(obj["frames"]))
            leaf = tuple((int(v), int(n)) for v, n in obj.get("leaf") or ())
            samples.append(Sample(stack, int(obj["value"]), int(obj.get("pid", 0)),
                                  int(obj.get("tid", 0)), obj.get("comm", ""), leaf))
            if events is not None:
                events += (SampleEvent(base + int(row[0]), int(row[1]), int(row[2]),
                                       len(samples) - 1, int(row[3]) if len(row) > 3 else 1)
                           for row in obj.get("events", []))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, IndexError):
            raise UsageError(f"{path} line {number}: not a sample of a pytracekit recording") \
                from None
    loss = LossReport(**{k: int(v) for k, v in head.get("loss", {}).items()
                         if k in LossReport().as_dict()})
    meta = {str(k): str(v) for k, v in head.get("meta", {}).items()}
    meta.setdefault("tool", head.get("tool", ""))
    meta["created"] = head.get("created", "")
    if events is not None:
        events.sort(key=lambda e: e.time_ns)
    return StackProfile(samples, head.get("value_type", "samples"), head.get("unit", "count"),
                        int(head.get("period", 0)), int(head.get("duration_ns", 0)), loss, meta,
                        events)


def _frame(name: str, kind: str, module: str, at: Any, files: list[ModuleInfo]) -> Frame:
    """A recorded frame, with its addresses and file when the recording has them."""
    if not at:
        return Frame(name, kind, module)
    address, vaddr, index = (int(x) for x in at)
    image = files[index] if 0 <= index < len(files) else None
    return Frame(name, kind, module, address, vaddr if image else 0, image)


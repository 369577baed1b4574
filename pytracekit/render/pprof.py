"""pprof: gzip-compressed perftools.profiles.Profile (proto/profile.proto).

What goes where:
- sample types: a sampling profile (period > 0) has [samples/count, cpu/nanoseconds]
  with value x period as the second; anything else has one [value_type/unit];
- every frame is a Location with one Line and Function; the frame kind is
  carried by the Location's Mapping, named as perf names them
  ([kernel.kallsyms]) or [process], [jit], [marker]. A user frame in a file
  maps to that module: one Mapping per file with the link-time range of its
  executable segment (memory_start/limit), that segment's file offset, its
  build id and path, and the Location's address is the link-time address
  (address - start + offset = file offset, the same in every process), so
  pprof can symbolize it later. has_functions only where every location of
  the mapping is named. Python frames (kind python) map to [python]; their
  Function carries the source file and their Line the line number. The main binary (by samples, the root-most user
  frame's module that is not a shared library) is mapping 1, as pprof expects;
- labels: comm (string), pid and tid (numbers);
- duration, meta (comments `pytracekit.meta.KEY=VALUE`) and the nonzero loss
  counts (comments `pytracekit.loss.NAME=N`) survive a round trip through from_pprof.
"""
from __future__ import annotations

import gzip
import os
import re
import time
from typing import Iterable

from ..errors import UsageError
from ..model import Frame, LossReport, ModuleInfo, Sample, StackProfile, unnamed
from .proto import profile_pb2 as pb

KIND_MAPPINGS = {"kernel": "[kernel.kallsyms]", "process": "[process]", "jit": "[jit]",
                 "marker": "[marker]"}
PYTHON_MAPPING = "[python]"   # not in KIND_MAPPINGS: speedscope names a Python frame's file
MAPPING_KINDS = {name: kind for kind, name in KIND_MAPPINGS.items()}
MAPPING_KINDS[PYTHON_MAPPING] = "python"
PYTHON_LINE = re.compile(r" \(.*:(\d+)\)$")   # "inner (app.py:14)"
LOSS_PREFIX = "pytracekit.loss."
META_PREFIX = "pytracekit.meta."
UNIT_NAMES = {"count": "count", "nanoseconds": "nanoseconds", "microseconds": "microseconds",
              "bytes": "bytes"}


class _Strings:
    """The string table: index 0 is always ""."""

    def __init__(self, table: Iterable[str]) -> None:
        self.table = table
        self.index: dict[str, int] = {}
        self("")

    def __call__(self, text: str) -> int:
        if not text.isascii():   # protobuf strings are UTF-8: a non-UTF-8 path's \udcff stays text
            text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        found = self.index.get(text)
        if found is None:
            found = self.index[text] = len(self.index)
            self.table.append(text)
        return found


def sample_types(profile: StackProfile) -> list[tuple[str, str]]:
    if profile.period > 0 and profile.value_type == "samples":
        return [("samples", "count"), ("cpu", "nanoseconds")]
    return [(profile.value_type or "samples", UNIT_NAMES.get(profile.unit, profile.unit))]


def to_pprof(profile: StackProfile, *, time_nanos: int | None = None) -> bytes:
    """The profile as a gzip-compressed profile.proto message."""
    out = pb.Profile()
    s = _Strings(out.string_table)
    types = sample_types(profile)
    for kind, unit in types:
        out.sample_type.add(type=s(kind), unit=s(unit))
    if len(types) == 2:
        out.period_type.type, out.period_type.unit = s("cpu"), s("nanoseconds")
        out.period = profile.period
    out.default_sample_type = s(types[-1][0])
    out.duration_nanos = profile.duration_ns
    out.time_nanos = time.time_ns() if time_nanos is None else time_nanos
    mappings: dict[object, int] = {}
    for key, info, named in _mappings(profile):
        mappings[key] = len(mappings) + 1
        mapping = out.mapping.add(id=mappings[key], filename=s(key if info is None else info.path),
                                  has_functions=named)
        if info is not None:
            mapping.memory_start, mapping.memory_limit = info.start, info.limit
            mapping.file_offset, mapping.build_id = info.file_offset, s(info.build_id)
    functions: dict[tuple[str, str, str], int] = {}
    locations: dict[Frame, int] = {}

    def location_id(frame: Frame) -> int:
        found = locations.get(frame)
        if found is not None:
            return found
        python = frame.kind == "python"
        fkey = (frame.name, frame.kind, frame.module if python else "")
        if fkey not in functions:
            functions[fkey] = len(functions) + 1
            out.function.add(id=functions[fkey], name=s(frame.name), system_name=s(frame.name),
                             filename=s(frame.module) if python else 0)
        found = locations[frame] = len(locations) + 1
        key = _mapping_key(frame)
        loc = out.location.add(id=found, mapping_id=mappings.get(key, 0),
                               address=frame.vaddr if frame.image is not None else frame.address)
        line = PYTHON_LINE.search(frame.name) if python else None
        loc.line.add(function_id=functions[fkey], line=int(line[1]) if line else 0)
        return found

    for sample in profile.samples:
        values = [sample.value] + ([sample.value * profile.period] if len(types) == 2 else [])
        entry = out.sample.add(location_id=[location_id(f) for f in reversed(sample.stack)],
                               value=values)
        if sample.comm:
            entry.label.add(key=s("comm"), str=s(sample.comm))
        if sample.pid:
            entry.label.add(key=s("pid"), num=sample.pid)
        if sample.tid:
            entry.label.add(key=s("tid"), num=sample.tid)
    for key, value in profile.meta.items():
        out.comment.append(s(f"{META_PREFIX}{key}={value}"))
    for key, value in profile.loss.as_dict().items():
        if value:
            out.comment.append(s(f"{LOSS_PREFIX}{key}={value}"))
    return gzip.compress(out.SerializeToString(), mtime=0)


_SHARED_LIBRARY = re.compile(r"\.so(\.[0-9.]+)?$")


def _mapping_key(frame: Frame) -> object:
    """What a frame's Mapping is keyed by: its file's ModuleInfo, else its kind's
    pseudo-file, else its module name."""
    if frame.kind in KIND_MAPPINGS:
        return KIND_MAPPINGS[frame.kind]
    if frame.kind == "python":
        return PYTHON_MAPPING
    return frame.image if frame.image is not None else (frame.module or None)


def _mappings(profile: StackProfile) -> list[tuple[object, ModuleInfo | None, bool]]:
    """(key, module info or None, every location named) per Mapping, the main
    binary first: pprof calls mapping[0] the main binary and names the
    profile after it (the module of the root-most user frame, by samples)."""
    named: dict[object, bool] = {}
    roots: dict[object, int] = {}
    pseudo = set(MAPPING_KINDS)
    for sample in profile.samples:
        program = library = None
        for frame in sample.stack:
            key = _mapping_key(frame)
            if key is None:
                continue
            named[key] = named.get(key, True) and not frame.unknown
            if frame.kind == "user" and key not in pseudo:
                # a stack reaches the program through libc's start code: the
                # root-most frame outside a shared library is the program's
                if program is None and not _SHARED_LIBRARY.search(frame.module):
                    program = key
                library = key if library is None else library
        root = program if program is not None else library
        if root is not None:
            roots[root] = roots.get(root, 0) + sample.value
    users = [k for k in named if k not in pseudo]
    users.sort(key=lambda k: -roots.get(k, 0))     # stable: first seen among equals
    order = users + [name for name in (PYTHON_MAPPING, *(KIND_MAPPINGS[k] for k in (
        "jit", "kernel", "marker", "process"))) if name in named]
    return [(k, k if isinstance(k, ModuleInfo) else None, named[k]) for k in order]


def parse(data: bytes) -> pb.Profile:
    """The Profile message of a pprof file, gzip-compressed or not."""
    try:
        raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        message = pb.Profile()
        message.ParseFromString(raw)
    except Exception as exc:   # gzip, zlib and protobuf each raise their own
        raise UsageError(f"not a pprof profile (gzip-compressed profile.proto): {exc}") from None
    if not message.string_table or message.string_table[0] != "":
        raise UsageError("not a pprof profile: its string table does not start with \"\"")
    return message


def from_pprof(data: bytes) -> StackProfile:
    """A pprof file back into a StackProfile: the first sample type's values,
    frames root first (inlined lines become frames of their own)."""
    message = parse(data)
    strings = message.string_table
    mapping_kind = {m.id: MAPPING_KINDS.get(strings[m.filename], "user") for m in message.mapping}
    # a file's mapping (with its range) names frames by basename, as symbols.py does
    mapping_name = {m.id: os.path.basename(strings[m.filename]) if m.memory_limit
                    else strings[m.filename] for m in message.mapping}
    mapping_info = {m.id: ModuleInfo(strings[m.filename], strings[m.build_id], m.memory_start,
                                     m.memory_limit, m.file_offset)
                    for m in message.mapping if m.memory_limit}
    function_name = {f.id: strings[f.name] for f in message.function}
    function_file = {f.id: strings[f.filename] for f in message.function}
    location_frames: dict[int, list[Frame]] = {}
    for loc in message.location:
        kind = mapping_kind.get(loc.mapping_id, "user")
        module = "" if kind != "user" else mapping_name.get(loc.mapping_id, "")
        # a location pprof has not symbolized: its module and address, as symbols.py names it
        fallback = unnamed(module or "[unknown]", loc.address)
        names = [function_name.get(line.function_id, fallback) for line in loc.line] or \
            [fallback]
        # line[0] is the innermost inlined function; the stack wants the caller first.
        info = mapping_info.get(loc.mapping_id)
        if kind == "python" and loc.line:    # its source file, as the Python frame had it
            module = function_file.get(loc.line[0].function_id, "")
        location_frames[loc.id] = [Frame(n, kind, module, loc.address,
                                         loc.address if info else 0, info)
                                   for n in reversed(names)]
    samples = []
    for entry in message.sample:
        stack: list[Frame] = []
        for loc_id in reversed(entry.location_id):
            stack += location_frames.get(loc_id, [Frame("[unknown]")])
        labels = {strings[lb.key]: (strings[lb.str] if lb.str else lb.num) for lb in entry.label}
        samples.append(Sample(tuple(stack), entry.value[0] if entry.value else 0,
                              pid=int(labels.get("pid", 0)), tid=int(labels.get("tid", 0)),
                              comm=str(labels.get("comm", ""))))
    first = message.sample_type[0] if message.sample_type else None
    profile = StackProfile(samples=samples, duration_ns=message.duration_nanos,
                           value_type=strings[first.type] if first else "samples",
                           unit=strings[first.unit] if first else "count")
    if strings[message.period_type.type] == "cpu" and profile.value_type == "samples":
        profile.period = message.period
    for index in message.comment:
        _read_comment(strings[index], profile)
    return profile


def _read_comment(text: str, profile: StackProfile) -> None:
    key, sep, value = text.partition("=")
    if not sep:
        return
    if key.startswith(META_PREFIX):
        profile.meta[key[len(META_PREFIX):]] = value
    elif key.startswith(LOSS_PREFIX) and value.isdigit():
        name = key[len(LOSS_PREFIX):]
        if hasattr(LossReport(), name):
            setattr(profile.loss, name, int(value))

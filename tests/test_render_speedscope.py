"""speedscope JSON: the file format's required shape, and a round trip."""
import json

import jsonschema
import pytest

from pytracekit.errors import UsageError
from pytracekit.model import StackProfile
from pytracekit.render.speedscope import SCHEMA, from_speedscope, to_speedscope

from stack_samples import spin_profile

# The "sampled" part of speedscope's file format (src/lib/file-format-spec.ts).
_NUMBERS = {"type": "array", "items": {"type": "number"}}
SAMPLED_FILE = {
    "type": "object",
    "required": ["$schema", "shared", "profiles"],
    "properties": {
        "$schema": {"const": SCHEMA},
        "shared": {"type": "object", "required": ["frames"], "properties": {"frames": {
            "type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string"}, "file": {"type": "string"}}}}}},
        "profiles": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "required": ["type", "name", "unit", "startValue", "endValue", "samples", "weights"],
            "properties": {
                "type": {"const": "sampled"}, "name": {"type": "string"},
                "unit": {"enum": ["none", "nanoseconds", "microseconds", "milliseconds",
                                  "seconds", "bytes"]},
                "startValue": {"type": "number"}, "endValue": {"type": "number"},
                "samples": {"type": "array", "items": _NUMBERS}, "weights": _NUMBERS}}},
        "name": {"type": "string"}, "activeProfileIndex": {"type": "number"},
        "exporter": {"type": "string"},
    },
}


def test_output_follows_the_file_format_and_holds_the_totals():
    doc = json.loads(to_speedscope(spin_profile(other=7)))
    jsonschema.validate(doc, SAMPLED_FILE)
    prof = doc["profiles"][0]
    frames = doc["shared"]["frames"]
    assert sum(prof["weights"]) == prof["endValue"] == 1007 and prof["unit"] == "none"
    assert len(prof["samples"]) == len(prof["weights"]) == 4
    stacks = {tuple(frames[i]["name"] for i in s): w for s, w in zip(prof["samples"],
                                                                      prof["weights"])}
    assert stacks[("workload", "_start", "__libc_start_main", "main", "spin_outer",
                   "spin_inner")] == 950
    names = [f["name"] for f in frames]
    assert len(names) == len(set(names)), "frames are shared, not repeated"
    assert {f["name"]: f.get("file") for f in frames}["do_idle"] == "[kernel.kallsyms]"


def test_round_trip_keeps_stacks_kinds_modules_and_weights():
    profile = spin_profile(other=7)
    back = from_speedscope(to_speedscope(profile))
    want = {tuple((f.name, f.kind, f.module) for f in s.stack): s.value for s in profile.samples}
    got = {tuple((f.name, f.kind, f.module) for f in s.stack): s.value for s in back.samples}
    assert got == want
    assert {s.comm for s in back.samples} == {"workload", "swapper/0"}


def test_time_units_carry_over():
    profile = StackProfile(spin_profile().samples, value_type="off_cpu", unit="microseconds")
    doc = json.loads(to_speedscope(profile))
    assert doc["profiles"][0]["unit"] == "microseconds"
    assert from_speedscope(json.dumps(doc)).unit == "microseconds"


@pytest.mark.parametrize("text", ["", "{}", '{"shared": {"frames": []}, "profiles": '
                                  '[{"type": "sampled", "unit": "none", "samples": [[3]], '
                                  '"weights": [1]}]}'])
def test_not_a_speedscope_file_is_one_clear_error(text):
    with pytest.raises(UsageError) as info:
        from_speedscope(text)
    assert info.value.message.startswith("not a speedscope sampled profile")

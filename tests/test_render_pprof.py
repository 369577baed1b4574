"""pprof output: parsed back with the profile.proto schema, read by go tool pprof."""
import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor

from pytracekit.errors import UsageError
from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.render.pprof import from_pprof, parse, to_pprof
from pytracekit.render.proto import profile_pb2

from stack_samples import kernel, spin_profile, user

PROTO = Path(profile_pb2.__file__).with_name("profile.proto")


def test_the_file_is_gzip_and_parses_back_with_the_same_totals():
    profile = spin_profile(other=7)
    data = to_pprof(profile)
    assert data[:2] == b"\x1f\x8b"
    message = profile_pb2.Profile()
    message.ParseFromString(gzip.decompress(data))
    strings = message.string_table
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in message.sample_type] == [
        ("samples", "count"), ("cpu", "nanoseconds")]
    assert sum(s.value[0] for s in message.sample) == profile.total == 1007
    assert sum(s.value[1] for s in message.sample) == 1007 * 10_101_010
    assert message.period == 10_101_010 and message.duration_nanos == 2_000_000_000
    assert (strings[message.period_type.type], strings[message.period_type.unit]) == (
        "cpu", "nanoseconds")


def test_stacks_are_leaf_first_with_labels_and_kinds_as_mappings():
    message = parse(to_pprof(spin_profile()))
    strings = message.string_table
    functions = {f.id: strings[f.name] for f in message.function}
    locations = {loc.id: loc for loc in message.location}
    mappings = {m.id: strings[m.filename] for m in message.mapping}
    assert all(m.has_functions for m in message.mapping)
    assert strings[message.mapping[0].filename] == "/w/workload", "the main binary comes first"
    irq = next(s for s in message.sample if s.value[0] == 20)
    names = [functions[locations[i].line[0].function_id] for i in irq.location_id]
    assert names == ["sysvec_apic_timer_interrupt", "asm_sysvec_apic_timer_interrupt", "--",
                     "spin_inner", "spin_outer", "main", "__libc_start_main", "_start",
                     "workload"]
    assert [mappings[locations[i].mapping_id] for i in irq.location_id[:3]] == [
        "[kernel.kallsyms]", "[kernel.kallsyms]", "[marker]"]
    assert mappings[locations[irq.location_id[-1]].mapping_id] == "[process]"
    assert locations[irq.location_id[0]].address == 0xffffffff81000100
    labels = {strings[lb.key]: strings[lb.str] if lb.str else lb.num for lb in irq.label}
    assert labels == {"comm": "workload", "pid": 42, "tid": 43}


def test_round_trip_keeps_everything_the_model_holds():
    profile = spin_profile(other=7)
    back = from_pprof(to_pprof(profile))
    assert back.samples == profile.samples
    assert (back.value_type, back.unit, back.period, back.duration_ns) == (
        "samples", "count", 10_101_010, 2_000_000_000)
    assert back.meta == profile.meta and back.loss == profile.loss


def test_off_cpu_profiles_have_one_sample_type_in_their_unit():
    stack = (Frame("sleeper", "process"),) + user("main", "do_sleep") + kernel("schedule")
    profile = StackProfile([Sample(stack, 500_000_000, 9, 9, "sleeper")], value_type="off_cpu",
                           unit="nanoseconds")
    message = parse(to_pprof(profile))
    strings = message.string_table
    assert [(strings[t.type], strings[t.unit]) for t in message.sample_type] == [
        ("off_cpu", "nanoseconds")]
    assert message.period == 0 and [list(s.value) for s in message.sample] == [[500_000_000]]
    back = from_pprof(to_pprof(profile))
    assert (back.value_type, back.unit, back.total) == ("off_cpu", "nanoseconds", 500_000_000)


def test_inlined_lines_become_frames_caller_first():
    message = profile_pb2.Profile(string_table=["", "memcpy", "printf", "samples", "count"])
    message.sample_type.add(type=3, unit=4)
    message.function.add(id=1, name=1)
    message.function.add(id=2, name=2)
    loc = message.location.add(id=1)
    loc.line.add(function_id=1)
    loc.line.add(function_id=2)
    message.sample.add(location_id=[1], value=[4])
    back = from_pprof(message.SerializeToString())   # uncompressed is accepted too
    assert [f.name for f in back.samples[0].stack] == ["printf", "memcpy"]
    assert back.total == 4


@pytest.mark.parametrize("data", [b"", b"\x1f\x8b garbage", b"\x08\x96\x01 not a profile"])
def test_not_a_profile_is_one_clear_error(data):
    with pytest.raises(UsageError) as info:
        from_pprof(data)
    assert info.value.message.startswith("not a pprof profile")
    assert "\n" not in info.value.message


def _proto_fields(text: str) -> dict[str, dict[str, tuple[int, bool, str]]]:
    """message -> field -> (number, repeated, type), read from the .proto text."""
    messages: dict = {}
    for name, body in re.findall(r"message (\w+) \{(.*?)\n\}", text, re.S):
        messages[name] = {
            field: (int(number), bool(rep), kind) for rep, kind, field, number in
            re.findall(r"^\s*(repeated )?(\w+) (\w+) = (\d+);", body, re.M)}
    return messages


def test_bindings_match_profile_proto_and_pprofs_field_numbers():
    """profile_pb2.py was generated from profile.proto; a drift fails here."""
    declared = _proto_fields(PROTO.read_text())
    compiled = {}
    for name, desc in profile_pb2.DESCRIPTOR.message_types_by_name.items():
        compiled[name] = {f.name: (f.number, _repeated(f),
                                   f.message_type.name if f.message_type else
                                   _SCALARS[f.type]) for f in desc.fields}
    assert compiled == declared
    # A few numbers that pprof readers depend on (github.com/google/pprof proto/profile.proto).
    assert declared["Profile"]["string_table"][0] == 6
    assert declared["Profile"]["period_type"][0] == 11
    assert declared["Sample"]["label"][0] == 3
    assert declared["Location"]["line"][0] == 4


_SCALARS = {FieldDescriptor.TYPE_INT64: "int64", FieldDescriptor.TYPE_UINT64: "uint64",
            FieldDescriptor.TYPE_BOOL: "bool", FieldDescriptor.TYPE_STRING: "string"}


def _repeated(field) -> bool:
    if hasattr(field, "is_repeated"):   # protobuf >= 5.29; `label` is gone in 7
        return field.is_repeated
    return field.label == FieldDescriptor.LABEL_REPEATED


def test_go_tool_pprof_reads_it(tmp_path):
    go = shutil.which("go")
    if go is None:
        pytest.skip("needs go (apt-get install golang-go) for `go tool pprof`")
    path = tmp_path / "spin.pb.gz"
    path.write_bytes(to_pprof(spin_profile(other=7)))
    res = subprocess.run([go, "tool", "pprof", "-top", "-symbolize=none", "-sample_index=samples",
                          str(path)], capture_output=True, text=True, timeout=60,
                         env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert "Showing nodes accounting for 1007, 100% of 1007 total" in res.stdout
    top = res.stdout.split("cum%\n", 1)[1].splitlines()[0].split()
    assert top == ["950", "94.34%", "94.34%", "970", "96.33%", "spin_inner"]


@pytest.mark.root
def test_a_real_profile_converts_with_the_same_totals(tmp_path, workload):
    from conftest import pytracekit
    from pytracekit.render.folded import parse_folded
    # 1 s of CPU time (spincpu): ~199 samples however loaded the machine is
    res = pytracekit("profile", "-F", "199", "-f", "--", workload, "spincpu", "1000")
    assert res.returncode == 0, res.stderr
    profile = parse_folded(res.stdout)
    message = parse(to_pprof(profile))
    assert sum(s.value[0] for s in message.sample) == profile.total > 20
    back = from_pprof(to_pprof(profile))
    assert back.total == profile.total
    on_spin = sum(s.value for s in back.samples if "spin_inner" in [f.name for f in s.stack])
    assert on_spin >= 0.9 * back.total


def _nm_range(binary: str, name: str) -> tuple[int, int]:
    out = subprocess.run(["nm", "-S", binary], capture_output=True, text=True).stdout
    start, size = next(l.split()[:2] for l in out.splitlines() if l.endswith(f" {name}"))
    return int(start, 16), int(start, 16) + int(size, 16)


def _build_id(path: str) -> str:
    notes = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    return notes.split("Build ID:")[1].split()[0]


@pytest.mark.root
def test_go_tool_pprof_reads_a_real_profile(tmp_path, workload_nofp):
    # golang-go is a test package (deps/apt/pprof.txt): `make test` installs it
    go = shutil.which("go")
    if go is None:
        pytest.skip("needs go (apt-get install golang-go, or make test) for `go tool pprof`")
    from conftest import pytracekit
    out = tmp_path / "spin.pb.gz"
    res = pytracekit("profile", "-F", "199", "-U", "--output", str(out), "--", workload_nofp,
                     "spin", "1")
    assert res.returncode == 0, res.stderr

    def pprof(*args: str) -> str:
        run = subprocess.run([go, "tool", "pprof", "-symbolize=none", *args, str(out)],
                             capture_output=True, text=True, timeout=60,
                             env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
        assert run.returncode == 0, run.stderr
        return run.stdout

    top = pprof("-top", "-sample_index=samples")
    build_id = _build_id(workload_nofp)
    # the main binary is the workload, by name and build id
    assert f"File: {Path(workload_nofp).name}\nBuild ID: {build_id}\n" in top
    assert top.split("cum%\n", 1)[1].split()[5] == "spin_inner"   # the top flat entry

    raw = pprof("-raw")
    mappings = {}   # id -> (start, limit, offset, file, build id)
    for line in raw.split("\nMappings\n", 1)[1].splitlines():
        ident, ranges, *rest = line.split()
        start, limit, offset = (int(x, 16) for x in ranges.split("/"))
        mappings[int(ident.rstrip(":"))] = (start, limit, offset, rest[0],
                                            rest[1] if len(rest) > 2 else "")
    main = mappings[1]
    assert main[3] == workload_nofp and main[4] == build_id and main[0] < main[1]
    libc = next(m for m in mappings.values() if Path(m[3]).name.startswith("libc.so"))
    assert libc[4] == _build_id(libc[3]) and libc[0] < libc[1]
    # locations: link-time addresses inside each function, in the main binary's mapping.
    # Keyed by (name, mapping): ld.so has a `_start` of its own, sampled when the
    # profile catches the dynamic loader at work.
    locations = {}
    for line in raw.split("\nLocations\n", 1)[1].split("\nMappings\n", 1)[0].splitlines():
        found = re.match(r"\s*\d+: (0x[0-9a-f]+) M=(\d+) (\S+)", line)   # (not mapped: no M=)
        if found:
            locations.setdefault((found[3], int(found[2])), int(found[1], 16))
    for name in ("spin_inner", "spin_outer", "main", "_start"):
        assert (name, 1) in locations, (name, sorted(locations))
        address = locations[name, 1]
        low, high = _nm_range(workload_nofp, name)
        assert low <= address < high, (name, hex(address), hex(low))
    libc_id = next(i for i, m in mappings.items() if m is libc)
    assert ("__libc_start_call_main", libc_id) in locations

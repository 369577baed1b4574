"""script: each sample or event of a recording (record keeps them), and
record -e SPEC: stacks at any probe, read by report, script, diff and exports."""
import gzip
import json

import pytest

from pytracekit.collect import recording
from pytracekit.model import Frame, LossReport, ModuleInfo, Sample, SampleEvent, StackProfile

from conftest import pytracekit
from schema_check import validate_lines
from stack_checks import contains_run

EXE = ModuleInfo("/opt/w", "ab12", 0x1000, 0x2000, 0x1000)
CALLER = ["main", "counted_function"]          # root first, as recorded
SPIN = ["main", "spin_outer", "spin_inner"]


def _profile_with_events():
    """Two stacks, three samples on two CPUs, out of time order in the list."""
    a = (Frame("w", "process"), Frame("main", "user", "w", 0, 0x1234, EXE),
         Frame("f", "user", "w", 0, 0x1300, EXE), Frame("--", "marker"),
         Frame("do_sys_openat2", "kernel", "kernel"))
    b = a[:3]
    events = [SampleEvent(5_000_123_456, 1, 11, 0), SampleEvent(5_000_000_000, 0, 10, 1),
              SampleEvent(5_010_000_000, 0, 12, 0, 3)]
    return StackProfile([Sample(a, 4, 10, 0, "w"), Sample(b, 1, 10, 0, "w")], "samples",
                        "count", 10_000_000, 20_000_000, LossReport(), {"event": "cpu-clock"},
                        events)


def test_events_round_trip_and_print_as_perf_script(tmp_path):
    path = tmp_path / "r.ptk"
    recording.save(_profile_with_events(), str(path))
    head = json.loads(gzip.open(path, "rt").readline())
    assert head["events"] == 3 and head["time_base_ns"] == 5_000_000_000
    back = recording.load(str(path))
    assert back.events == sorted(_profile_with_events().events, key=lambda e: e.time_ns)
    res = pytracekit("script", "-i", str(path))
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout == (
        "               w      10/10      [000] 5.000000:   10000000 cpu-clock:\n"
        "\t            1300 f (/opt/w)\n"
        "\t            1234 main (/opt/w)\n"
        "\n"
        "               w      10/11      [001] 5.000123:   10000000 cpu-clock:\n"
        "\t               0 do_sys_openat2 ([kernel.kallsyms])\n"
        "\t            1300 f (/opt/w)\n"
        "\t            1234 main (/opt/w)\n"
        "\n"
        "               w      10/12      [000] 5.010000:   30000000 cpu-clock:\n"
        "\t               0 do_sys_openat2 ([kernel.kallsyms])\n"
        "\t            1300 f (/opt/w)\n"
        "\t            1234 main (/opt/w)\n\n")
    objs = validate_lines(pytracekit("script", "-i", str(path), "--json").stdout, "script")
    assert [(o["tid"], o["cpu"], o["time_ns"], o["period"]) for o in objs] == [
        (10, 0, 5_000_000_000, 10_000_000), (11, 1, 5_000_123_456, 10_000_000),
        (12, 0, 5_010_000_000, 30_000_000)]
    assert objs[1]["frames"][0] == {"address": 0, "symbol": "do_sys_openat2",
                                    "module": "[kernel.kallsyms]", "kind": "kernel"}


def test_an_aggregated_recording_is_one_clear_error(tmp_path):
    path = tmp_path / "old.ptk"
    profile = _profile_with_events()
    profile.events = None            # as recordings made before samples were kept
    recording.save(profile, str(path))
    res = pytracekit("script", "-i", str(path))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "aggregated stacks only" in res.stderr


def _script(path):
    res = pytracekit("script", "-i", str(path), "--json")
    assert res.returncode == 0, res.stderr
    return validate_lines(res.stdout, "script")


def _root_first(obj):
    return [f["symbol"] for f in reversed(obj["frames"])]


@pytest.mark.root
def test_script_prints_every_on_cpu_sample(workload, tmp_path):
    path = tmp_path / "spin.ptk"
    res = pytracekit("record", "-o", str(path), "-F", "99", "--", workload, "spin", "0.5")
    assert res.returncode == 0, res.stderr
    prof = recording.load(str(path))
    head = json.loads(gzip.open(path, "rt").readline())
    assert prof.loss.lost_events == 0 and "unmatched_events" not in prof.meta
    samples = _script(path)
    assert len(samples) == head["events"] == prof.total > 0   # each counted sample, once
    pids = {s.pid for s in prof.samples}
    assert len(pids) == 1 and {o["pid"] for o in samples} == pids == {o["tid"] for o in samples}
    spinning = [o for o in samples if contains_run(_root_first(o), SPIN)]
    assert spinning     # how many depends on the machine's load: profile's tests judge that
    assert all(o["period"] == 10101010 and o["event"] == "cpu-clock" for o in samples)
    # the leaf's file: the workload's spin loop, or the clock read below it
    # (libc's clock_gettime, the vDSO's)
    assert all(o["frames"][0]["module"] == workload or o["frames"][0]["symbol"] in
               ("clock_gettime", "__clock_gettime", "clock_gettime@plt")
               for o in spinning if o["frames"][0]["kind"] == "user")
    assert any(o["frames"][0]["module"] == workload for o in spinning)
    times = [o["time_ns"] for o in samples]
    assert times == sorted(times) and times[-1] - times[0] <= prof.duration_ns
    text = pytracekit("script", "-i", str(path)).stdout
    assert text.count(" cpu-clock:\n") == len(samples) == text.count("\n\n")
    assert text.count(f" spin_inner ({workload})\n") == len(spinning)


@pytest.mark.root
def test_record_e_at_a_uprobe_counts_each_call_with_its_caller(workload, tmp_path):
    """record -e at a workload function called exactly 37 times: report,
    script, folded/pprof export and diff all see 37, with the exact caller stack."""
    path = tmp_path / "calls.ptk"
    res = pytracekit("record", "-o", str(path), "-e", f"{workload}:counted_function", "-g",
                     "--", workload, "calls", "37")
    assert res.returncode == 0, res.stderr
    assert "recorded 37 events (each kept) in 1 distinct stacks" in res.stderr
    prof = recording.load(str(path))
    assert prof.meta["event"] == f"{workload}:counted_function" and prof.total == 37
    assert "unmatched_events" not in prof.meta
    samples = _script(path)
    assert len(samples) == 37
    for o in samples:
        assert _root_first(o)[-2:] == CALLER and o["period"] == 1
        assert o["event"] == f"{workload}:counted_function"
        assert o["frames"][0]["module"] == workload
    report = pytracekit("report", str(path), "--no-tree")
    assert "37 events at" in report.stdout
    row = next(l for l in report.stdout.splitlines() if l.endswith(" counted_function"))
    assert row.split()[:4] == ["100.00%", "100.00%", "37", "37"]
    folded = pytracekit("report", str(path), "-f").stdout.splitlines()
    assert len(folded) == 1 and folded[0].endswith(";main;counted_function 37")
    pprof = tmp_path / "calls.pb.gz"
    assert pytracekit("report", str(path), "--output", str(pprof)).returncode == 0
    from pytracekit.render.pprof import parse
    message = parse(pprof.read_bytes())
    assert sum(s.value[0] for s in message.sample) == 37
    html = tmp_path / "calls.html"
    assert pytracekit("report", str(path), "--output", str(html)).returncode == 0
    from pytracekit.render.flamegraph import page_data
    drawn = page_data(html.read_text())
    assert drawn["total"] == 37 and set(CALLER) <= set(drawn["names"])
    diff = pytracekit("diff", str(path), str(path), "--json")
    assert diff.returncode == 0, diff.stderr
    assert {json.loads(l)["function"] for l in diff.stdout.splitlines()} >= set(CALLER)


@pytest.mark.root
def test_record_e_at_a_tracepoint_has_kernel_and_user_frames(workload, tmp_path):
    path = tmp_path / "open.ptk"
    target = tmp_path / "opened"
    res = pytracekit("record", "-o", str(path), "-e", "t:syscalls:sys_enter_openat", "-g",
                     "--", workload, "open", str(target), "23")
    assert res.returncode == 0, res.stderr
    samples = _script(path)
    from_main = [o for o in samples if "main" in _root_first(o)]
    assert len(from_main) == 23       # ld.so's opens come before main
    assert all(any(f["kind"] == "kernel" for f in o["frames"]) for o in from_main)
    assert len(samples) == recording.load(str(path)).total


def test_sample_log_ties_a_key_to_its_stack_by_addresses_then_names():
    """A read that keeps a function's addresses apart gets each sample on its
    own stack; one that merges them (profile) on the merged stack."""
    from pytracekit.collect.samplelog import _stack_finder
    at = lambda address: (Frame("w", "process"), Frame("main", "user", "w", 0x10),
                          Frame("f", "user", "w", address))
    apart = StackProfile([Sample(at(0x20), 2, 1, 0, "w"), Sample(at(0x24), 3, 1, 0, "w")])
    find = _stack_finder(apart)
    assert find(Sample(at(0x24), 0, 1, 0, "w")) == 1 and find(Sample(at(0x20), 0, 1, 0, "w")) == 0
    merged = StackProfile([Sample(at(0), 5, 1, 0, "w")])
    assert _stack_finder(merged)(Sample(at(0x24), 0, 1, 0, "w")) == 0
    assert _stack_finder(merged)(Sample(at(0x24), 0, 2, 0, "w")) is None   # another process


def test_counted_by_events_recounts_each_stack_and_its_leaf_instructions():
    """The aggregate is what the kept samples say: a stack counted in BPF after
    the last kept sample loses it, a stack without kept samples goes, and the
    leaf's per-instruction counts (annotate's, where samples keep them) follow."""
    from dataclasses import fields
    from pytracekit.collect.samplelog import counted_by_events
    a, b, c = (tuple(Frame(n) for n in path) for path in (("m", "a"), ("m", "b"), ("m", "c")))
    prof = StackProfile([Sample(a, 9, 1), Sample(b, 4, 1), Sample(c, 2, 1)], period=7)
    events = [SampleEvent(30, 0, 1, 2), SampleEvent(10, 0, 1, 0), SampleEvent(20, 1, 1, 0, 2)]
    out = counted_by_events(prof, events, {0: {0x10: 1, 0x14: 2}, 2: {0x30: 1}})
    assert [(s.stack, s.value) for s in out.samples] == [(a, 3), (c, 1)]
    assert [(e.time_ns, e.sample, e.weight) for e in out.events] == [(30, 1, 1), (10, 0, 1),
                                                                     (20, 0, 2)]
    assert out.period == 7 and out.total == sum(e.weight for e in out.events)
    if "leaf" in {f.name for f in fields(Sample)}:   # annotate's per-instruction counts
        assert [s.leaf for s in out.samples] == [((0x10, 1), (0x14, 2)), ((0x30, 1),)]

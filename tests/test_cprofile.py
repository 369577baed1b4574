"""cprofile: windows of pprof pushed to a local /ingest receiver or written to a
rotating directory, against the spinning and sleeping workloads."""
import os
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import Tool, pytracekit, pytracekit_probes_left, wait_until
from fleet_helpers import IngestReceiver, free_port
from schema_check import validate_lines
from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.render.pprof import from_pprof
from stack_checks import contains_run

SPIN_PATH = ["main", "spin_outer", "spin_inner"]


def samples_named(profile: StackProfile, path: list[str]) -> list[Sample]:
    """Samples whose stack holds `path` as consecutive frames (root first)."""
    return [s for s in profile.samples if contains_run([f.name for f in s.stack], path)]


def _held_workload(tmp_path, *args):
    go = tmp_path / "go"
    from conftest import WORKLOAD
    return go, subprocess.Popen([str(WORKLOAD), "--go-file", str(go), *args])


@pytest.mark.root
def test_pushes_are_pprof_windows_holding_the_spinning_stack(workload, tmp_path):
    receiver = IngestReceiver()
    go, child = _held_workload(tmp_path, "spin", "1.5")
    try:
        with Tool("cprofile", "--every", "0.5", "--push", receiver.url, "--app", "wl",
                  "--tag", "env=test", "-p", str(child.pid), "--json") as tool:
            go.write_text("go")
            assert child.wait(timeout=30) == 0
            out, err = tool.stop()
        assert tool.returncode == 0, err
    finally:
        receiver.close()
        if child.poll() is None:
            child.kill()
    objs = validate_lines(out, "cprofile")
    windows = [o for o in objs if o["type"] == "window"]
    summary = next(o for o in objs if o["type"] == "summary")
    assert len(windows) >= 3 and summary["windows"] == len(windows)
    assert summary["pushes_ok"] == len(receiver.pushes) == len(windows)
    assert summary["push_failures"] == 0 and summary["pushes_dropped"] == 0
    profiles = []
    for push, window in zip(receiver.pushes, windows):
        query = push["query"]
        assert push["path"] == "/ingest"
        assert push["content_type"].startswith("multipart/form-data; boundary=")
        assert query["name"] == "wl.cpu{env=test}"
        assert query["format"] == "pprof" and query["sampleRate"] == "49"
        assert int(query["from"]) == int(window["from_unix"])
        assert int(query["until"]) > int(query["from"])
        profile = from_pprof(push["profile"])
        assert profile.total == window["total"]   # each push holds its window only
        profiles.append(profile)
    spinning = sum(s.value for p in profiles for s in samples_named(p, SPIN_PATH))
    total = sum(p.total for p in profiles)
    assert total > 0 and spinning >= 0.9 * total, (spinning, total)
    assert pytracekit_probes_left() == []


@pytest.mark.root
@pytest.mark.alone   # 0.5 s windows: beside another test a late tick closed windows 0.1 s apart
def test_rotating_directory_keeps_the_newest_k_windows(workload, tmp_path):
    out_dir = tmp_path / "profiles"
    go, child = _held_workload(tmp_path, "sleep", "30", "100")
    try:
        with Tool("cprofile", "--every", "0.5", "--dir", str(out_dir), "--keep", "2",
                  "--kind", "cpu", "--kind", "offcpu", "-p", str(child.pid), "-d", "2.4",
                  "--json") as tool:
            go.write_text("go")
            out, err = tool.wait()
        assert tool.returncode == 0, err
    finally:
        child.kill()
        child.wait()
    objs = validate_lines(out, "cprofile")
    for kind in ("cpu", "offcpu"):
        windows = [o for o in objs if o["type"] == "window" and o["kind"] == kind]
        assert len(windows) >= 4, windows
        starts = [w["from_unix"] for w in windows]
        assert all(b - a >= 0.45 for a, b in zip(starts, starts[1:])), starts
        kept = sorted(out_dir.glob(f"{kind}-*.pb.gz"))
        assert [str(p) for p in kept] == [w["file"] for w in windows[-2:]]
        for path in kept:
            profile = from_pprof(path.read_bytes())
            assert path.name.startswith(f"{kind}-2") and path.name.endswith("Z.pb.gz")
            if kind == "offcpu":
                assert profile.total == next(w["total"] for w in windows
                                             if w["file"] == str(path))
    assert not list(out_dir.glob(".*"))   # no temporary files left
    offcpu = [o for o in objs if o.get("kind") == "offcpu"]
    # the workload sleeps in sleeper(): every offcpu window but the partial last one sees it
    assert sum(o["total"] for o in offcpu) >= 1_000_000 * 1.5, offcpu


@pytest.mark.root
def test_failed_pushes_are_retried_counted_and_never_stop_the_loop(workload, tmp_path):
    flaky = IngestReceiver(fail_first=2)
    dead = f"http://127.0.0.1:{free_port()}"
    try:
        res = pytracekit("cprofile", "--every", "0.4", "--push", flaky.url, "-d", "1",
                         "--retries", "3", "-p", "1", "--json")
        assert res.returncode == 0, res.stderr
        summary = validate_lines(res.stdout, "cprofile")[-2]
        assert summary["push_retries"] >= 2 and summary["push_failures"] == 0
        assert summary["pushes_ok"] == summary["windows"] == len(flaky.pushes)
    finally:
        flaky.close()
    res = pytracekit("cprofile", "--every", "0.4", "--push", dead, "-d", "1", "--retries", "1",
                     "-p", "1", "--json")
    assert res.returncode == 0, res.stderr
    summary = validate_lines(res.stdout, "cprofile")[-2]
    assert summary["push_failures"] == summary["windows"] >= 2
    assert f"{summary['windows']} pushes failed" in res.stderr
    assert pytracekit_probes_left() == []


def test_usage_errors():
    res = pytracekit("cprofile", "--every", "1")
    assert res.returncode == 2 and "needs somewhere to put profiles" in res.stderr
    res = pytracekit("cprofile", "--dir", "/proc/nope")
    assert res.returncode == 2 and "cannot use --dir /proc/nope" in res.stderr
    res = pytracekit("cprofile", "--dir", "/tmp/x", "--tag", "oops")
    assert res.returncode == 2 and "bad --tag 'oops'" in res.stderr
    res = pytracekit("cprofile", "--dir", "/tmp/x", "--kind", "cpu", "--kind", "offcpu",
                     "--", "true")
    assert res.returncode == 2 and "-- COMMAND runs one profiler" in res.stderr


def _profile(*stacks: tuple[str, int]) -> StackProfile:
    return StackProfile([Sample(tuple(Frame(n) for n in names.split(";")), value, 7, 7, "w")
                         for names, value in stacks])


def test_windows_hold_only_what_changed_since_the_last_read():
    from pytracekit.fleet.continuous import Windower
    windower = Windower()
    first = windower.window(_profile(("main;a", 5), ("main;b", 2)), 10)
    second = windower.window(_profile(("main;a", 5), ("main;b", 9), ("main;c", 1)), 10)
    third = windower.window(_profile(("main;a", 6), ("main;b", 9), ("main;c", 1)), 10)
    as_dict = lambda p: {";".join(f.name for f in s.stack): s.value for s in p.samples}
    assert as_dict(first) == {"main;a": 5, "main;b": 2}
    assert as_dict(second) == {"main;b": 7, "main;c": 1}
    assert as_dict(third) == {"main;a": 1}
    assert third.duration_ns == 10


def test_each_windows_loss_counts_are_its_own():
    """The program's loss counters are cumulative and every read names the
    whole map again: a window reports only what was lost since the last one,
    and the unnamed frames among its own stacks."""
    from pytracekit.fleet.continuous import Windower
    from pytracekit.model import LossReport
    windower = Windower()
    first = _profile(("main;libx.so+0x10", 5), ("main;b", 2))
    first.loss = LossReport(lost_events=3, stack_errors=4, unknown_frames=1)
    second = _profile(("main;libx.so+0x10", 5), ("main;b", 9), ("main;[unknown]+0x8;c", 1))
    second.loss = LossReport(lost_events=3, stack_errors=10, unknown_frames=2)
    one, two = windower.window(first, 10), windower.window(second, 10)
    assert one.loss == LossReport(lost_events=3, stack_errors=4, unknown_frames=0)
    # libx.so+0x10's module is "" in this synthetic frame: only [unknown]+0x8 is unnamed
    assert two.loss == LossReport(lost_events=0, stack_errors=6, unknown_frames=1)
    restarted = _profile(("main;b", 10))
    restarted.loss = LossReport(stack_errors=2)
    assert windower.window(restarted, 10).loss.stack_errors == 2


def test_rotating_dir_writes_atomically_and_prunes_per_kind(tmp_path):
    from pytracekit.fleet.continuous import RotatingDir
    rot = RotatingDir(str(tmp_path), keep=2)
    for n in range(4):
        rot.write("cpu", b"c%d" % n, 1_700_000_000 + n)
    rot.write("offcpu", b"o", 1_700_000_000)
    assert [p.read_bytes() for p in rot.files("cpu")] == [b"c2", b"c3"]
    assert [p.name for p in rot.files("offcpu")] == ["offcpu-20231114T221320.000Z.pb.gz"]
    assert sorted(p.name for p in Path(tmp_path).iterdir()) == sorted(
        p.name for p in rot.files("cpu") + rot.files("offcpu"))


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.root
def test_a_map_reset_starts_the_windows_over_without_negative_deltas(workload):
    import time
    from pytracekit.tools.cprofile import start_streams
    child = subprocess.Popen([workload, "spin", "10"])   # outlives a slow start; killed below
    try:
        stream = start_streams(("cpu",), [child.pid], (), 99)[0]
        try:
            stream.session.target.release()
            time.sleep(0.6)
            first, _ = stream.cut(time.time())
            # stopped while the maps are emptied: else a sample of the spinner can
            # land between the reset and the look at the map (seen in CI)
            os.kill(child.pid, signal.SIGSTOP)
            assert wait_until(lambda: _state(child.pid) == "T")
            stream.reset()
            assert len(stream.session.prog["counts"]) == 0 and stream.windower.seen == {}
            os.kill(child.pid, signal.SIGCONT)
            time.sleep(0.6)
            second, _ = stream.cut(time.time())
            cumulative = stream.session.read()
        finally:
            stream.session.close()
    finally:
        child.kill()
        child.wait()
    assert first.total > 0 and second.total > 0 and stream.resets == 1
    # after the reset the window is everything the emptied maps collected since
    assert second.total <= cumulative.total and all(s.value > 0 for s in second.samples)
    assert samples_named(second, SPIN_PATH)


@pytest.mark.root
def test_a_command_is_profiled_from_its_start_and_ends_the_run(workload, tmp_path):
    res = pytracekit("cprofile", "--dir", str(tmp_path), "--every", "0.5", "-F", "99",
                     "--json", "--", workload, "spin", "1")
    assert res.returncode == 0, res.stderr
    windows = [o for o in validate_lines(res.stdout, "cprofile") if o["type"] == "window"]
    profiles = [from_pprof(Path(w["file"]).read_bytes()) for w in windows]
    total = sum(p.total for p in profiles)
    spinning = sum(s.value for p in profiles for s in samples_named(p, SPIN_PATH))
    assert total > 0 and spinning >= 0.9 * total, (spinning, total)
    assert pytracekit_probes_left() == []

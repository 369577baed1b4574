"""Python frames beyond profile (issue 13): record + report/diff, cprofile's
windows and top --functions, on Debian's python3.11 and one pyenv build, with
tests/python_target.py's known stacks. Line numbers come from its source."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Tool, pytracekit
from fleet_helpers import free_port, http_get
from pythons import need_python
from schema_check import validate_lines
from stack_checks import parse_json
from test_profile_python import TARGET, body_lines, function, line_of

from pytracekit.collect import recording
from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.render.pprof import from_pprof

INTERPRETERS = ["debian-3.11", "pyenv-3.12"]
OUTER_LINE = line_of("inner(20000)", "outer(seconds)")
INNER_LINES = body_lines("inner(n)")


def is_outer_inner(python_names: list[str]) -> bool:
    """The loop's stack, `<module> -> outer -> inner` (root first), outer on
    its call line and inner on one of its own lines."""
    if [function(n) for n in python_names] != ["<module>", "outer", "inner"]:
        return False
    assert python_names[1] == f"outer (python_target.py:{OUTER_LINE})", python_names
    assert int(python_names[2].rsplit(":", 1)[1].rstrip(")")) in INNER_LINES, python_names
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def share_outer_inner(profile: StackProfile, comm_prefix: str = "python3") -> tuple[int, int]:
    """(samples with the loop's stack, all samples) of the interpreter's process;
    its Python frames keep kind python and their file."""
    ok = total = 0
    for s in profile.samples:
        if not s.comm.startswith(comm_prefix):
            continue
        total += s.value
        python = [f for f in s.stack if f.kind == "python"]
        if is_outer_inner([f.name for f in python]):
            assert python[-1].module == str(TARGET), python[-1]
            ok += s.value
    return ok, total


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_record_then_report_folded_json_pprof_and_diff_show_the_python_stack(
        interpreter, tmp_path):
    python = need_python(interpreter)
    path = tmp_path / "loop.ptk"
    res = pytracekit("record", "-F", "199", "-o", str(path), "--", python, str(TARGET),
                     "loop", "1.5", timeout=120)
    assert res.returncode == 0, res.stderr
    assert "samples with Python frames" in res.stderr, res.stderr

    # the file keeps kind and file: read back as recorded
    ok, total = share_outer_inner(recording.load(str(path)))
    assert total >= 100 and ok >= 0.9 * total, (ok, total, res.stderr)

    folded = pytracekit("report", str(path), "-f")
    assert folded.returncode == 0, folded.stderr
    ok = total = 0
    for line in folded.stdout.splitlines():
        stack, count = line.rsplit(" ", 1)
        if stack.startswith("python3"):
            total += int(count)
            ok += int(count) * (f";outer (python_target.py:{OUTER_LINE});inner (python_target.py:"
                                in stack)
    assert total >= 100 and ok >= 0.9 * total, (ok, total)

    as_json = pytracekit("report", str(path), "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    _, stacks, _ = parse_json(as_json.stdout, "profile")
    ok = sum(s["value"] for s in stacks
             if is_outer_inner([f["name"] for f in s["frames"] if f["kind"] == "python"]))
    assert ok >= 0.9 * total, (ok, total)

    pprof = tmp_path / "loop.pb.gz"
    res = pytracekit("report", str(path), "--output", str(pprof))
    assert res.returncode == 0, res.stderr
    ok, pprof_total = share_outer_inner(from_pprof(pprof.read_bytes()))
    assert pprof_total == total and ok >= 0.9 * total, (ok, total)

    # diff against a recording without the script: inner's lines are what grew
    before = tmp_path / "before.ptk"
    recording.save(StackProfile([Sample((Frame("sh", "process"), Frame("main", "user", "sh")),
                                        10, 1, 1, "sh")], period=5025125), str(before))
    diff = pytracekit("diff", str(before), str(path), "--json")
    assert diff.returncode == 0, diff.stderr
    changes = {c["function"]: c for c in map(json.loads, diff.stdout.splitlines())}
    outer = changes[f"outer (python_target.py:{OUTER_LINE})"]
    assert outer["before_total"] == 0 and outer["after_total"] >= 90, outer   # percent
    inner = [c for name, c in changes.items() if name.startswith("inner (python_target.py:")]
    assert sum(c["after_self"] for c in inner) > 5 and not any(c["before_self"] for c in inner)


@pytest.mark.root
def test_record_no_python_keeps_native_frames_only(tmp_path):
    python = need_python("debian-3.11")
    path = tmp_path / "native.ptk"
    res = pytracekit("record", "-F", "199", "--no-python", "-o", str(path), "--", python,
                     str(TARGET), "loop", "0.5", timeout=120)
    assert res.returncode == 0, res.stderr
    profile = recording.load(str(path))
    assert profile.total >= 30
    assert not any(f.kind == "python" for s in profile.samples for f in s.stack)


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_cprofile_windows_hold_the_python_stack(interpreter, tmp_path):
    python = need_python(interpreter)
    res = pytracekit("cprofile", "--dir", str(tmp_path), "--every", "0.5", "-F", "199",
                     "--json", "--", python, str(TARGET), "loop", "1.5", timeout=120)
    assert res.returncode == 0, res.stderr
    windows = [o for o in validate_lines(res.stdout, "cprofile") if o["type"] == "window"]
    # The first window holds the interpreter's start-up; after it the loop runs to
    # the end (1.5 s of CPU time: ~300 samples, in as many windows as the load makes).
    shares = [share_outer_inner(from_pprof(Path(w["file"]).read_bytes())) for w in windows]
    later = shares[1:]
    ok, total = sum(o for o, _ in later), sum(t for _, t in later)
    assert total >= 150 and ok >= 0.9 * total, (shares, res.stderr)
    for window_ok, window_total in later:       # each window names its own samples
        assert window_ok >= 0.5 * window_total or window_total < 10, shares


@pytest.mark.root
def test_cprofile_map_reset_keeps_python_frames_in_the_next_window():
    from pytracekit.tools.cprofile import start_streams
    python = need_python("debian-3.11")
    child = subprocess.Popen([python, str(TARGET), "loop", "30"])   # killed below
    try:
        stream = start_streams(("cpu",), [child.pid], (), 199)[0]
        try:
            windows = []
            for _ in range(2):
                # 0.4 s of the loop's CPU time (~80 samples at 199 Hz), however
                # loaded the machine is; polling registers the process, names stacks
                start, deadline = cpu_seconds(child.pid), time.monotonic() + 30
                while cpu_seconds(child.pid) - start < 0.4 and time.monotonic() < deadline:
                    stream.session.poll(50)
                child.send_signal(signal.SIGSTOP)   # no sample between the cut and the check
                windows.append(stream.cut(time.time())[0])
                stream.reset()
                prog = stream.session.prog
                assert len(prog["py_counts"]) == 0 and len(prog["py_stacks"]) == 0
                assert stream.session.python.stacks == {}
                child.send_signal(signal.SIGCONT)
        finally:
            stream.session.close()
    finally:
        child.kill()
        child.wait()
    assert stream.resets == 2
    for window in windows:
        ok, total = share_outer_inner(window)
        assert total >= 50 and ok >= 0.9 * total, (ok, total)


@pytest.mark.root
def test_export_profile_source_reads_a_python_process_from_the_scrape_thread():
    """The scrape runs in prometheus_client's thread: reading Python frames
    there (their ring buffer is polled by read()) must work as in the main one."""
    python = need_python("debian-3.11")
    port = free_port()
    child = subprocess.Popen([python, str(TARGET), "loop", "30"])   # killed below
    try:
        with Tool("export", "--tool", f"profile,pid={child.pid},frequency=199",
                  "--listen", f"127.0.0.1:{port}") as tool:
            start, deadline = cpu_seconds(child.pid), time.monotonic() + 30
            while cpu_seconds(child.pid) - start < 0.5 and time.monotonic() < deadline:
                time.sleep(0.1)           # ~100 samples at 199 Hz, however loaded
            status, body = http_get(f"http://127.0.0.1:{port}/metrics")
            tool.stop()
    finally:
        child.kill()
        child.wait()
    assert status == 200
    from prometheus_client.parser import text_string_to_metric_families
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    samples = {s.labels["comm"]: s.value for s in families["pytracekit_cpu_samples"].samples}
    assert samples.get("python3.11", 0) >= 50, samples
    errors = [s.value for s in families["pytracekit_export_read_errors"].samples]
    assert errors == [0], errors


def top_rows(*args: str, seconds: str = "2", intervals: str = "1") -> list[dict]:
    """The rows of top's last interval."""
    res = pytracekit("top", "--functions", "--json", "-d", seconds, "-n", intervals, *args,
                     timeout=120)
    assert res.returncode == 0, res.stderr
    objs = validate_lines(res.stdout, "top")
    tables = [o for o in objs if o["type"] == "functions"]
    assert len(tables) == int(intervals), objs
    return tables[-1]["rows"]


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_top_functions_charges_the_interpreter_to_the_python_function(interpreter):
    python = need_python(interpreter)
    # the second second: a process is registered as it is first sampled, so its
    # first samples (the first interval, on a loaded machine) may lack Python frames
    rows = top_rows("--", python, str(TARGET), "loop", "3", seconds="1", intervals="2")
    first = rows[0]
    assert (first["symbol"], first["module"], first["python"], first["kernel"]) == \
        ("inner (python_target.py)", "python_target.py", True, False), rows[:3]
    assert first["pct"] > 60, rows[:3]
    # the interpreter's own functions took the Python function's place
    assert not any(r["symbol"] == "_PyEval_EvalFrameDefault" for r in rows), rows[:5]


@pytest.mark.root
def test_top_functions_leaves_a_c_extension_native():
    """zlib.compress: the leaf is in libz, not the interpreter: native rows."""
    rows = top_rows("--", need_python("debian-3.11"), str(TARGET), "zlib", "3")
    libz = sum(r["pct"] for r in rows if r["module"].startswith("libz.so"))
    python = sum(r["pct"] for r in rows if r["python"])
    assert libz > 50 and python < 25, rows[:5]
    assert all(not r["python"] for r in rows if r["module"].startswith("libz.so"))


def test_pprof_python_frames_carry_file_and_line_and_come_back_as_python():
    from pytracekit.render.pprof import parse, to_pprof
    stack = (Frame("app", "process"), Frame("main", "user", "python3.11"),
             Frame("outer (app.py:83)", "python", "/srv/app.py", 0x7f01),
             Frame("inner (app.py:76)", "python", "/srv/app.py", 0x7f02),
             Frame("[+3 python frames]", "python"))
    profile = StackProfile([Sample(stack, 4, 9, 9, "app")], period=5025125)
    message = parse(to_pprof(profile))
    strings = message.string_table
    [mapping] = [m for m in message.mapping if strings[m.filename] == "[python]"]
    functions = {f.id: f for f in message.function}
    lines = {strings[functions[loc.line[0].function_id].name]:
             (strings[functions[loc.line[0].function_id].filename], loc.line[0].line)
             for loc in message.location if loc.mapping_id == mapping.id}
    assert lines == {"outer (app.py:83)": ("/srv/app.py", 83),
                     "inner (app.py:76)": ("/srv/app.py", 76),
                     "[+3 python frames]": ("", 0)}
    assert from_pprof(to_pprof(profile)).samples[0].stack == stack

"""opensnoop against the workload's `open PATH N`: every open of a marker path
captured, nothing lost; filters compiled into the kernel; Ctrl-C under a storm."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from conftest import Tool, pytracekit, pytracekit_probes_left
from snoop_helpers import one_line_error, start_to_file, summary, validated_json

# 1,000,000 opens as fast as one process can: about 10 s here, even with other
# load on the machine. The cost per open is measured in bench/bench_opensnoop.py.
STORM = 1_000_000


@pytest.fixture
def marker(tmp_path):
    return str(tmp_path / f"opensnoop-marker-{os.getpid()}")


@pytest.mark.root
def test_captures_every_open_of_a_storm_and_loses_none(workload, marker):
    res = pytracekit("opensnoop", "--", workload, "open", marker, str(STORM))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["PID", "COMM", "FD", "ERR", "PATH"]
    hits = [line.split() for line in lines[1:] if line.endswith(" " + marker)]
    assert len(hits) == STORM
    pids = {h[0] for h in hits}
    assert len(pids) == 1 and all(h[1:4] == ["workload", "3", "0"] for h in hits)
    totals = summary(res.stderr)
    assert totals["lost"] == 0 and totals["unread"] == 0
    assert totals["captured"] == len(lines) - 1
    assert "WARNING" not in res.stderr


@pytest.mark.root
def test_json_lines_validate_and_end_with_the_loss_summary(workload, marker):
    res = pytracekit("opensnoop", "--json", "--", workload, "open", marker, "100")
    assert res.returncode == 0, res.stderr
    objects = validated_json("opensnoop", res.stdout)
    events = [o for o in objects if o["type"] == "event" and o["path"] == marker]
    assert len(events) == 100
    assert {(e["comm"], e["fd"], e["err"], e["flags"]) for e in events} == \
        {("workload", 3, 0, os.O_RDONLY | os.O_CREAT)}
    assert objects[-1]["type"] == "loss" and objects[-1]["lost_events"] == 0
    assert objects[-1]["captured"] == len(objects) - 1


@pytest.mark.root
def test_failed_only_with_timestamps_uid_and_flags(workload, tmp_path):
    missing = str(tmp_path / "no-such-dir" / "file")
    res = pytracekit("opensnoop", "-x", "-T", "-U", "-e", "--", workload, "open", missing, "7")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "UID", "PID", "COMM", "FD", "ERR", "FLAGS", "PATH"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == 7                       # -x: the successful opens are not shown
    stamps = [float(r[0]) for r in rows]
    assert stamps == sorted(stamps) and stamps[0] > 0
    for r in rows:
        assert r[1:] == ["0", r[2], "workload", "-1", "2", "00000100", missing]


@pytest.mark.root
def test_name_and_flag_filters_run_in_the_kernel(workload, marker, tmp_path):
    # A copy of the workload with a name of its own: other runs on this machine
    # open files as "workload" too.
    named = tmp_path / f"osn{os.getpid() % 100000}"
    shutil.copy(workload, named)
    with Tool("opensnoop", "-n", named.name[:6], "-f", "O_CREAT") as tool:
        subprocess.run([str(named), "open", marker, "50"], check=True)
        subprocess.run(["cat", "/etc/hostname"], check=True, capture_output=True)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [r[-1] for r in rows] == [marker] * 50   # not ld.so.cache (no O_CREAT), not cat
    assert summary(err)["captured"] == 50


@pytest.mark.root
def test_uid_filter(workload, tmp_path):
    marker = str(tmp_path / "uid-marker")
    os.chmod(tmp_path, 0o777)
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    with Tool("opensnoop", "-u", "65534", "-U", "--json") as tool:
        subprocess.run(nobody + [workload, "open", marker, "20"], check=True)
        subprocess.run([workload, "open", marker, "5"], check=True)      # root: not shown
        out, err = tool.stop()
    events = [o for o in validated_json("opensnoop", out) if o["type"] == "event"]
    mine = [e for e in events if e["path"] == marker]
    assert len(mine) == 20 and {e["uid"] for e in events} == {65534}


@pytest.mark.root
def test_ctrl_c_during_a_storm_stops_at_once_and_reports(workload, marker, tmp_path):
    out_path = tmp_path / "out.txt"
    proc = start_to_file(["opensnoop", "--", workload, "open", marker, "100000000"], out_path)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)       # a hang fails here
    assert proc.returncode == 0, err
    totals = summary(err)
    printed = sum(1 for line in out_path.read_text().splitlines() if line.endswith(marker))
    assert printed > 1000 and totals["captured"] >= printed
    assert "Traceback" not in err
    assert pytracekit_probes_left() == []


@pytest.mark.parametrize("args, words", [
    (["-f", "O_BOGUS"], "unknown open flag 'O_BOGUS'"),
    (["-b", "1000"], "--buffer-pages 1000 is not a power of two"),
    (["-n", "a-name-much-too-long"], "at most 15 printable characters"),
])
def test_bad_options_are_one_line_usage_errors(args, words):
    res = pytracekit("opensnoop", *args, "-d", "0.1")
    assert res.returncode == 2
    assert words in one_line_error(res.stderr, "opensnoop")

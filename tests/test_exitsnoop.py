"""exitsnoop against processes the test starts: each exit exactly once, with
its parent, exit code or signal."""
import os
import signal
import subprocess

import pytest

from conftest import Tool
from snoop_helpers import summary, validated_json


def _exits(workload: str, marker: str) -> dict[int, str]:
    """Known exits: 3 marker children (0) + their parent (0), `exit 7`, SIGKILL."""
    expected = {}
    parent = subprocess.Popen([workload, "exec", "3", marker])
    parent.wait()
    expected[parent.pid] = "0"
    code = subprocess.Popen(["sh", "-c", "exit 7"])
    code.wait()
    expected[code.pid] = "code 7"
    killed = subprocess.Popen(["sleep", "30"])
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    expected[killed.pid] = "signal 9 (KILL)"
    return expected


@pytest.mark.root
def test_each_exit_once_with_its_code_or_signal(workload):
    with Tool("exitsnoop") as tool:
        expected = _exits(workload, f"exit-{os.getpid()}")
        out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PCOMM", "PID", "PPID", "TID", "AGE(s)", "EXIT_CODE"]
    rows = [line.split(None, 5) for line in lines[1:]]
    by_pid = {int(r[1]): r for r in rows}
    for pid, code in expected.items():
        assert [r[1] for r in rows].count(str(pid)) == 1
        assert by_pid[pid][5] == code and by_pid[pid][2] == str(os.getpid())
    workload_pid = next(p for p, c in expected.items() if c == "0")
    children = [r for r in rows if r[2] == str(workload_pid)]
    assert len(children) == 3 and {(r[0], r[5]) for r in children} == {("exe", "0")}
    assert summary(err)["lost"] == 0


@pytest.mark.root
def test_failed_only_json(workload):
    with Tool("exitsnoop", "-x", "--json") as tool:
        expected = _exits(workload, f"exitx-{os.getpid()}")
        out, err = tool.stop()
    events = [o for o in validated_json("exitsnoop", out) if o["type"] == "event"]
    mine = {e["pid"]: e for e in events if e["pid"] in expected}
    assert set(mine) == {p for p, c in expected.items() if c != "0"}      # -x
    assert {(e["exit_code"], e["signal"]) for e in mine.values()} == {(7, 0), (0, 9)}
    assert all(e["age_s"] >= 0 for e in mine.values())


def test_pid_and_command_together_is_a_usage_error():
    from conftest import pytracekit
    from snoop_helpers import one_line_error
    res = pytracekit("exitsnoop", "-p", "1", "--", "true")
    assert res.returncode == 2
    assert "either -p PID or -- COMMAND" in one_line_error(res.stderr, "exitsnoop")

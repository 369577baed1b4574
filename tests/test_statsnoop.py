"""statsnoop against os.stat()/os.lstat() calls the test makes: exact counts."""
import os

import pytest

from conftest import pytracekit
from snoop_helpers import summary, validated_json

STAT_SCRIPT = """
import os, sys
marker = sys.argv[1]
for i in range(7):
    os.stat(marker)
for i in range(3):
    os.lstat(marker)
for i in range(4):
    try:
        os.stat(marker + '.missing')
    except FileNotFoundError:
        pass
"""


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / f"statsnoop-marker-{os.getpid()}"
    path.write_text("x")
    return str(path)


@pytest.mark.root
def test_counts_every_stat_of_the_marker(marker):
    res = pytracekit("statsnoop", "--", "python3", "-c", STAT_SCRIPT, marker)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["PID", "COMM", "FD", "ERR", "PATH"]
    rows = [line.split() for line in lines[1:]]
    ok = [r for r in rows if r[-1] == marker]
    missing = [r for r in rows if r[-1] == marker + ".missing"]
    assert len(ok) == 10 and {tuple(r[1:4]) for r in ok} == {("python3", "0", "0")}
    assert len(missing) == 4 and {tuple(r[1:4]) for r in missing} == {("python3", "-1", "2")}
    assert summary(res.stderr)["lost"] == 0


@pytest.mark.root
def test_failed_only_json_with_timestamps(marker):
    res = pytracekit("statsnoop", "-x", "-t", "--json", "--", "python3", "-c", STAT_SCRIPT,
                     marker)
    assert res.returncode == 0, res.stderr
    objects = validated_json("statsnoop", res.stdout)
    events = [o for o in objects if o["type"] == "event"]
    assert all(e["ret"] == -1 and e["err"] > 0 for e in events)     # -x
    assert [e["path"] for e in events].count(marker + ".missing") == 4
    assert marker not in [e["path"] for e in events]
    assert objects[-1]["type"] == "loss" and objects[-1]["lost_events"] == 0


def test_missing_pid_is_one_line():
    from conftest import pytracekit
    from snoop_helpers import one_line_error
    res = pytracekit("statsnoop", "-p", "999999999")
    assert res.returncode == 1
    assert "no process with pid 999999999" in one_line_error(res.stderr, "statsnoop")

"""uthreads on the workload's `threads N` mode (N pthread_create calls of
started_thread) and on a Python process starting N threading.Threads:
exactly N thread starts, each with its own new tid."""
import subprocess
from pathlib import Path

import pytest

from conftest import Tool, pytracekit, wait_until
from snoop_helpers import summary, validated_json
from usdt_helpers import PYTHON

THREADS = 6

# Waits for a go-file, starts N threads one after another, then says done.
SCRIPT = """
import os, sys, threading, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
for _ in range(int(sys.argv[2])):
    t = threading.Thread(target=lambda: None)
    t.start()
    t.join()
open(go + ".done", "w").close()
time.sleep(30)   # killed by the test
"""


@pytest.mark.root
def test_every_pthread_create_of_a_command_with_its_start_routine(workload):
    res = pytracekit("uthreads", "--", workload, "threads", str(THREADS))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME", "PID", "TID", "COMM", "TYPE", "START"]
    rows = [line.split() for line in lines[1:]]
    assert [r[3:] for r in rows] == [["workload", "pthread", "started_thread"]] * THREADS
    pid = {r[1] for r in rows}
    assert len(pid) == 1
    tids = [r[2] for r in rows]
    assert len(set(tids)) == THREADS and pid.isdisjoint(tids)
    assert summary(res.stderr) == {"captured": THREADS, "lost": 0, "unread": 0}


@pytest.mark.root
def test_python_threads_of_a_running_process_in_json(tmp_path: Path):
    go = tmp_path / "go"
    proc = subprocess.Popen([PYTHON, "-c", SCRIPT, str(go), str(THREADS)])
    try:
        with Tool("uthreads", "--json", "-p", str(proc.pid)) as tool:
            go.touch()
            assert wait_until(lambda: (tmp_path / "go.done").exists(), timeout=30)
            out, err = tool.stop()
    finally:
        proc.kill()
        proc.wait()
    assert tool.returncode == 0, err
    objects = validated_json("uthreads", out)
    events = [o for o in objects if o["type"] == "event"]
    assert len(events) == THREADS
    assert {(e["pid"], e["creator_tid"]) for e in events} == {(proc.pid, proc.pid)}
    assert len({e["tid"] for e in events}) == THREADS
    # Debian's python3.11 is stripped: thread_run shows as the module and offset
    assert len({e["start_routine"] for e in events}) == 1
    assert events[0]["start_routine"].startswith("python3.11")
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == THREADS

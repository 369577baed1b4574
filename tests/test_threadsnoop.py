"""threadsnoop against the workload's threads (pthread_create) and
clonethreads (glibc clone(), no pthread_create) modes: each new thread
exactly once, with its start routine, counted as perf counts task_newtask."""
import pytest

from conftest import pytracekit
from snoop_helpers import perf_stat, summary, validated_json


@pytest.mark.root
def test_each_pthread_with_its_start_routine(workload):
    command = [workload, "threads", "4", "1000"]   # alive to be symbolized
    res = pytracekit("threadsnoop", "--", *command)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(ms)", "PID", "COMM", "FUNC"]
    rows = [line.split() for line in lines[1:]]
    assert [r[2:] for r in rows] == [["workload", "started_thread"]] * 4
    assert len({r[1] for r in rows}) == 1
    assert summary(res.stderr) == {"captured": 4, "lost": 0, "unread": 0}
    assert perf_stat(["task:task_newtask"], command)["task:task_newtask"] == 4


@pytest.mark.root
def test_threads_made_without_pthread_create_in_json(workload):
    res = pytracekit("threadsnoop", "--json", "--", workload, "clonethreads", "3")
    assert res.returncode == 0, res.stderr
    objects = validated_json("threadsnoop", res.stdout)
    events = [o for o in objects if o["type"] == "event"]
    pid = events[0]["pid"]
    assert [(e["pid"], e["creator_tid"], e["func"], e["address"]) for e in events] == \
        [(pid, pid, "[clone]", 0)] * 3
    assert len({e["tid"] for e in events} | {pid}) == 4
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == 3

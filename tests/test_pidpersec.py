"""pidpersec against the workload's exec (N forks) and threads (N clones)
modes: every new task counted once, as perf counts sched_process_fork."""
import re

import pytest

from conftest import pytracekit
from snoop_helpers import perf_stat, validated_json

LINE = re.compile(r"^\d\d:\d\d:\d\d: PIDs/sec: (\d+)$")


@pytest.mark.root
def test_forks_of_a_command_each_once(workload):
    command = [workload, "exec", "5"]
    res = pytracekit("pidpersec", "--", *command)
    assert res.returncode == 0, res.stderr
    counts = [int(LINE.match(line)[1]) for line in res.stdout.splitlines()
              if not line.startswith("child")]
    assert sum(counts) == 5
    assert perf_stat(["sched:sched_process_fork"], command)["sched:sched_process_fork"] == 5


@pytest.mark.root
def test_threads_count_too_in_json(workload):
    res = pytracekit("pidpersec", "--json", "-i", "0.5", "--", workload, "threads", "3", "600")
    assert res.returncode == 0, res.stderr
    objects = validated_json("pidpersec", res.stdout)
    intervals = [o for o in objects if o["type"] == "interval"]
    # the threads start at once, then 600 ms pass: a second interval (0.5 s) ends meanwhile
    assert len(intervals) >= 2 and sum(o["count"] for o in intervals) == 3
    assert objects[-1]["type"] == "loss" and objects[-1]["map_full"] == 0

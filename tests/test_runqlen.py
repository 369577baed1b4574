"""runqlen with three spinners pinned to CPU 0: while they all run, CPU 0
always has at least two tasks waiting, whatever else the machine does."""
import os
import subprocess

import pytest

from conftest import pytracekit
from sched_helpers import json_lines, validate
from pytracekit.model import LinearHistogram
from pytracekit.tools.runqlen import occupancy, report_text


@pytest.mark.root
def test_runqlen_sees_the_queue_of_three_pinned_spinners(workload):
    spinners = [subprocess.Popen(["taskset", "-c", "0", workload, "spin", "8"])
                for _ in range(3)]
    try:
        res = pytracekit("runqlen", "-C", "--json", "0.5", "1")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("runqlen", objs)
    cpu0 = next(o for o in objs if o.get("cpu") == 0)
    assert cpu0["total"] > 0
    assert [b for b in cpu0["buckets"] if b["length"] < 2] == []
    assert cpu0["occupancy"] == 100.0
    # Other CPUs appear only if they ran something while sampled (an idle vCPU may not).
    cpus = {o.get("cpu") for o in objs if o["type"] == "runqlen"}
    assert 0 in cpus and cpus <= set(range(os.cpu_count()))


@pytest.mark.root
def test_runqlen_occupancy_text(workload):
    res = pytracekit("runqlen", "-O", "-d", "0.3")
    assert res.returncode == 0, res.stderr
    (line,) = [l for l in res.stdout.splitlines() if l.startswith("runqocc")]
    assert line.startswith("runqocc: ") and line.endswith("%")


def test_occupancy_and_text_layout():
    hist = LinearHistogram(buckets={0: 3, 1: 1}, unit="runqlen")
    assert occupancy(hist) == 25.0
    text = report_text({0: hist, 1: hist}, per_cpu=True, occ=True).splitlines()
    assert text == ["runqocc, CPU 0    25.00%", "runqocc, CPU 1    25.00%"]
    lines = report_text({0: hist}, per_cpu=False, occ=False).splitlines()
    assert lines[0].split() == ["runqlen", ":", "count", "distribution"]
    assert lines[1].split()[:3] == ["0", ":", "3"]

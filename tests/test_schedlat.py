"""schedlat shows the workload's task with its switches, run time and delays."""
import pytest

from conftest import pytracekit
from sched_helpers import json_lines, switch_counts, traced_cpuburst, validate
from pytracekit.tools.schedlat import TaskLatency, render

N, US = 10, 2000


@pytest.mark.root
def test_schedlat_shows_the_workload_with_its_switches(workload):
    out, counts = traced_cpuburst(workload, ["schedlat", "--json"], N, US)
    objs = json_lines(out)
    validate("schedlat", objs)
    (task,) = [o for o in objs if o["type"] == "task"]
    assert task["comm"] == "workload" and task["pid"] == task["tid"]
    nvcsw, nivcsw = switch_counts(counts)
    # switched in after each of the N sleeps, at least; each switch-in
    # follows a switch-out the workload counted
    assert N <= task["switches"] <= nvcsw + nivcsw
    assert N <= task["delays"] <= task["switches"]
    if nivcsw == 0:     # preempted bursts spend part of their wall time off-CPU
        assert task["runtime_ms"] >= N * US / 1000
    assert 0 < task["avg_delay_ms"] <= task["max_delay_ms"]


@pytest.mark.root
def test_schedlat_text_table_names_task_and_pid(workload):
    res = pytracekit("schedlat", "--", workload, "cpuburst", "3", "500")
    assert res.returncode == 0, res.stderr
    rows = [l for l in res.stdout.splitlines() if l.startswith("  workload:")]
    assert len(rows) == 1
    assert "TOTAL:" in res.stdout


def test_render_sorts_by_max_delay():
    rows = [TaskLatency(1, 1, "a", 1_000_000, 3, 2, 2_000_000, 1_500_000, 10.0),
            TaskLatency(2, 2, "b", 2_000_000, 5, 1, 3_000_000, 3_000_000, 11.0)]
    text = render(rows).splitlines()
    tasks = [l.split("|")[0].strip() for l in text if l.startswith("  a:") or l.startswith("  b:")]
    assert tasks == ["b:2", "a:1"]
    a_row = next(l for l in text if l.startswith("  a:1"))
    cells = [c.strip() for c in a_row.split("|")]
    assert cells[1] == "1.000 ms" and cells[2] == "3"
    assert cells[3] == "avg:    1.000 ms" and cells[4] == "max:    1.500 ms"
    assert text[-2].split("|")[1].strip() == "3.000 ms"

"""schedlat shows the workload's task with its switches, run time and delays."""
import subprocess
import time

import pytest

from conftest import Tool, pytracekit
from interval_helpers import per_interval, text_tables
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
    # runs and delays whose start or end no tracepoint reported (bpf/ptk_sched.h)
    unseen = objs[-1]["unseen"]
    # switched in after each of the N sleeps, at least, seen or not; each
    # switch-in follows a switch-out the workload counted
    assert N <= task["switches"] <= nvcsw + nivcsw
    # each sleep's delay is measured or unseen
    assert N <= task["delays"] + unseen and task["delays"] <= task["switches"]
    if nivcsw == unseen == 0:   # preempted bursts spend part of their wall time off-CPU
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


def _wait_asleep(pid: int) -> tuple[int, int]:
    """Until the task is asleep (its last switch-out done) and stays so: then
    its /proc/PID/schedstat run time (ns) and times switched in."""
    last = None
    for _ in range(500):
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/schedstat") as f:
            now = f.read()
        if state == "S" and now == last:
            runtime, _delay, switches = map(int, now.split())
            return runtime, switches
        last = now
        time.sleep(0.02)
    raise AssertionError(f"workload {pid} never settled")


def _totals(objs: list[dict], field: str) -> float:
    return sum(o[field] for o in objs if o["type"] == "task")


@pytest.mark.root
def test_schedlat_interval_tables_add_up_to_the_whole_run(workload):
    """Two schedlats watch the same span of `gatedburst` (three 150 ms bursts
    between two waits on stdin): one -i 0.1, one plain. Each burst spans a
    boundary: its run counts once, where it ends, so the intervals add up to
    the plain run exactly, and both to the kernel's own /proc/PID/schedstat:
    its run time and times switched in, also those sched_switch did not
    show (bpf/ptk_sched.h)."""
    proc = subprocess.Popen([workload, "gatedburst", "3", "150000"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        _wait_asleep(proc.pid)
        with Tool("schedlat", "--json", "-p", str(proc.pid)) as whole, \
                Tool("schedlat", "--json", "-i", "0.1", "-p", str(proc.pid)) as split:
            runtime_before, switches_before = _wait_asleep(proc.pid)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "done\n"
            runtime_after, switches_after = _wait_asleep(proc.pid)
            whole_out, whole_err = whole.stop()
            out, err = split.stop()
    finally:
        proc.kill()
        proc.wait()
    assert whole.returncode == 0 and split.returncode == 0, whole_err + err
    objs, whole_objs = json_lines(out), json_lines(whole_out)
    validate("schedlat", objs)
    assert {(o["pid"], o["tid"]) for o in objs if o["type"] == "task"} == {(proc.pid, proc.pid)}
    switches = per_interval(objs, "switches")
    assert len(switches) >= 3                       # each burst ends in its own 0.1 s table
    assert sum(switches.values()) == _totals(whole_objs, "switches") \
        == switches_after - switches_before >= 4
    assert sum(per_interval(objs, "delays").values()) == _totals(whole_objs, "delays")
    runtime_ms = (runtime_after - runtime_before) / 1e6
    assert runtime_ms >= 1                          # the bursts ran (even if preempted)
    assert abs(_totals(whole_objs, "runtime_ms") - runtime_ms) < 1e-5
    assert abs(_totals(objs, "runtime_ms") - runtime_ms) < 1e-5


@pytest.mark.root
def test_schedlat_interval_text_and_no_extra_table_at_the_end(workload):
    """-d a multiple of -i: the last interval's table is the end (as BCC)."""
    # sleeps for 20 s, killed at the end: it must outlive the tool's start-up
    # on a loaded machine (when it exits the run ends early, with one table)
    proc = subprocess.Popen([workload, "sleep", "1000", "20"])
    try:
        res = pytracekit("schedlat", "-i", "0.3", "-d", "0.9", "-p", str(proc.pid))
    finally:
        proc.kill()
        proc.wait()
    assert res.returncode == 0, res.stderr
    tables = text_tables(res.stdout)
    assert len(tables) == 3
    for table in tables:
        (row,) = [l for l in table if l.startswith("  workload:")]
        assert int(row.split("|")[2]) >= 5       # ~15 sleeps of 20 ms per 0.3 s
        assert sum(l.startswith("  TOTAL:") for l in table) == 1

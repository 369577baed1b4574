"""cpuunclaimed: the per-tick arithmetic on hand-made samples (exact), and a
real run while the workload spins pinned to CPU 0: every complete tick finds
CPU 0 busy, and every CPU is counted once per tick."""
import re

import pytest

from conftest import pytracekit
from pytracekit.tools.cpuunclaimed import tally
from snoop_helpers import validated_json


def test_unclaimed_is_idle_cpus_up_to_the_waiting_tasks():
    samples = {
        1: {0: 3, 1: 0, 2: 0, 3: 1},   # 2 idle, 2 waiting on CPU 0: 2 unclaimed
        2: {0: 5, 1: 0, 2: 1, 3: 1},   # 1 idle, 4 waiting: 1 unclaimed
        3: {0: 1, 1: 1, 2: 0, 3: 0},   # nothing waits: 0
        4: {0: 2, 1: 0},               # a CPU missing: skipped
    }
    t = tally(samples, 4)
    assert (t.ticks, t.incomplete, t.busy, t.idle, t.unclaimed) == (3, 1, 7, 5, 3)
    assert t.percent() == (100 * 7 / 12, 100 * 3 / 12)


@pytest.mark.root
def test_a_cpu_kept_busy_is_busy_in_every_tick(workload):
    res = pytracekit("cpuunclaimed", "--json", "0.5", "--", "taskset", "-c", "0", workload,
                     "spin", "1.5")
    assert res.returncode == 0, res.stderr
    objects = validated_json("cpuunclaimed", res.stdout)
    intervals = [o for o in objects if o["type"] == "interval"]
    ticks = sum(o["ticks"] for o in intervals)
    busy = sum(o["busy"] for o in intervals)
    assert ticks > 0 and sum(o["busy"] + o["idle"] for o in intervals) == ticks * _cpus()
    assert busy >= ticks, intervals       # CPU 0 never idle while the spinner runs
    assert objects[-1]["map_full"] == 0


@pytest.mark.root
def test_bcc_line_with_timestamp_and_count():
    res = pytracekit("cpuunclaimed", "-T", "0.3", "2")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 2
    assert all(re.match(r"^\d\d:\d\d:\d\d %CPU +\d+\.\d\d%, unclaimed idle \d+\.\d\d%$", l)
               for l in lines), lines


def _cpus() -> int:
    from bcc.utils import get_online_cpus
    return len(get_online_cpus())


@pytest.mark.root
def test_csv_rows_show_every_spinner_pinned_to_cpu_0(workload):
    """-J (BCC's CSV): one row per tick; while four spinners pinned to CPU 0
    run throughout, CPU 0's run queue holds at least those four at every tick,
    and each CPU's offset is its sample's distance from the tick's first."""
    import subprocess
    spinners = [subprocess.Popen(["taskset", "-c", "0", workload, "spin", "60"])
                for _ in range(4)]
    try:
        res = pytracekit("cpuunclaimed", "-J", "-d", "0.5")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert res.returncode == 0, res.stderr
    ncpu = _cpus()
    lines = res.stdout.splitlines()
    assert lines[0].split(",") == ["TIMESTAMP_ns"] + [f"CPU{c}" for c in range(ncpu)] + \
        [f"OFFSET_ns_CPU{c}" for c in range(ncpu)]
    rows = [line.split(",") for line in lines[1:]]
    complete = [r for r in rows if "" not in r]
    assert len(complete) > 10, rows
    assert all(int(r[1]) >= 4 for r in complete), [r[1] for r in complete]
    stamps = [int(r[0]) for r in rows]
    assert stamps == sorted(stamps) and len(set(s // 10101010 for s in stamps)) == len(rows)
    assert all(min(int(x) for x in r[1 + ncpu:]) == 0 for r in complete)


def test_csv_takes_no_interval():
    res = pytracekit("cpuunclaimed", "-j", "1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no interval" in res.stderr

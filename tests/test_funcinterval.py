"""funcinterval against the ground-truth workload: `sleep N MS` calls
sleeper(MS) N times, one after the other, so N - 1 intervals of a little
over MS; perf stat counts the same run's clock_nanosleep events (N)."""
import subprocess

import pytest

from conftest import pytracekit
from netns_fixture import events_of, json_objects

N, MS = 5, 20


@pytest.mark.root
def test_intervals_between_calls_of_a_function(workload):
    res = pytracekit("funcinterval", "--json", "-m", f"{workload}:sleeper", "--",
                     workload, "sleep", str(N), str(MS))
    assert res.returncode == 0, res.stderr
    [hist] = events_of(json_objects(res.stdout, "funcinterval"), "histogram")
    # each interval is a sleep of MS (20) and then some: 16 ms buckets and up
    assert (hist["unit"], hist["total"]) == ("msecs", N - 1)
    assert min(b["low"] for b in hist["buckets"]) == 16


@pytest.mark.root
def test_tracepoint_intervals_as_perf_counts_the_events(workload, tmp_path):
    counts = tmp_path / "perf.csv"
    subprocess.run(["perf", "stat", "-x,", "-o", str(counts), "-e",
                    "syscalls:sys_enter_clock_nanosleep", "--", workload, "sleep", str(N),
                    str(MS)], check=True, capture_output=True, timeout=60)
    [line] = [x for x in counts.read_text().splitlines() if "clock_nanosleep" in x]
    calls = int(line.split(",")[0])
    res = pytracekit("funcinterval", "-u", "t:syscalls:sys_enter_clock_nanosleep", "--",
                     workload, "sleep", str(N), str(MS))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert lines[0].split() == ["usecs", ":", "count", "distribution"]
    rows = {int(r.split()[0]): int(r.split()[4]) for r in lines[1:]}
    assert calls == N and sum(rows.values()) == calls - 1
    # the 20 ms sleeps and more: nothing below the 16384 -> 32767 us bucket
    assert sum(n for low, n in rows.items() if low >= 16384) == N - 1


def test_usage_errors_are_one_line():
    res = pytracekit("funcinterval", "-u", "-m", "c:getpid")
    assert res.returncode == 2 and "mutually exclusive" in res.stderr
    res = pytracekit("funcinterval", "u:/bin/true:probe")
    assert res.returncode == 2 and res.stderr.count("\n") == 1

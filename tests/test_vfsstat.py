"""vfsstat against the workload's fileio mode (N each of write, pwrite, writev,
read, pread, readv, fsync, fdatasync after one O_CREAT open): each column as
perf stat counts the same sys_enter tracepoints over the same command, and
the growth from N=0 to N exactly the workload's calls."""
import re

import pytest

from conftest import pytracekit
from snoop_helpers import perf_stat, validated_json

ROUNDS = 25
CALLS = {
    "read": ["read", "pread64", "readv", "preadv", "preadv2"],
    "write": ["write", "pwrite64", "writev", "pwritev", "pwritev2"],
    "fsync": ["fsync", "fdatasync"],
    "open": ["open", "openat", "openat2", "creat", "open_by_handle_at"],
}
PER_ROUND = {"read": 3, "write": 3, "fsync": 2, "open": 0}


def _perf_columns(command: list[str]) -> dict[str, int]:
    events = [f"syscalls:sys_enter_{call}" for calls in CALLS.values() for call in calls]
    counts = perf_stat(events, command)
    return {kind: sum(counts[f"syscalls:sys_enter_{c}"] for c in calls)
            for kind, calls in CALLS.items()}


@pytest.mark.root
def test_columns_as_perf_counts_the_syscalls(workload, tmp_path):
    marker = str(tmp_path / "marker")
    command = [workload, "fileio", marker, str(ROUNDS)]
    res = pytracekit("vfsstat", "--json", "--", *command)
    assert res.returncode == 0, res.stderr
    objects = validated_json("vfsstat", res.stdout)
    intervals = [o for o in objects if o["type"] == "interval"]
    totals = {k: sum(o[k] for o in intervals) for k in ("read", "write", "fsync", "open", "create")}
    perf, perf_none = _perf_columns(command), _perf_columns([workload, "fileio", marker, "0"])
    for kind, per_round in PER_ROUND.items():
        assert totals[kind] == perf[kind], kind
        assert perf[kind] - perf_none[kind] == per_round * ROUNDS, kind
    assert totals["create"] == 1      # the one O_CREAT open; the loader's opens are read-only
    assert objects[-1]["type"] == "loss" and objects[-1]["map_full"] == 0


@pytest.mark.root
def test_bcc_columns_and_count(workload, tmp_path):
    res = pytracekit("vfsstat", "0.3", "2", "--", workload, "sleep", "1", "1000")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "TIME         READ/s  WRITE/s  FSYNC/s   OPEN/s CREATE/s"
    assert len(lines) == 3       # the count ends the run after two lines
    assert all(re.match(r"^\d\d:\d\d:\d\d: ( +\d+){5}$", line) for line in lines[1:]), lines

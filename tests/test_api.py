"""The composition API (pytracekit.api) and its runnable example."""
import ctypes
import subprocess
import sys

import pytest

from conftest import ROOT, pytracekit_probes_left
from pytracekit.api import Tracer, render, to_python
from pytracekit.errors import UsageError
from pytracekit.model import Counts, Histogram, LossReport


class Key(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint32), ("comm", ctypes.c_char * 16)]


def test_ctypes_values_become_python_values():
    key = Key(42, b"workload")
    assert to_python(key) == {"pid": 42, "comm": "workload"}
    assert to_python(key, hashable=True) == (42, "workload")
    assert to_python(ctypes.c_uint64(7)) == 7
    assert to_python((ctypes.c_int * 3)(1, 2, 3)) == [1, 2, 3]


def test_render_uses_the_tools_renderers():
    hist = Histogram({12: 5}, unit="bytes")
    lines = render(hist).splitlines()
    assert "bytes" in lines[0]
    assert lines[-1].split()[:5] == ["2048", "->", "4095", ":", "5"]
    table = render(Counts(("PID",), {(1,): 3, (2,): 9}))
    assert table.splitlines()[1].split() == ["2", "9"]
    assert render(LossReport(map_full=2)) == "WARNING: 2 updates dropped (map full)"


def test_tracer_arguments_are_checked():
    with pytest.raises(ValueError):
        Tracer()
    with pytest.raises(UsageError, match="either -p PID or -- COMMAND"):
        Tracer("int f(void *ctx) { return 0; }", pid=1, command=["true"])


@pytest.mark.root
def test_example_histogram_of_malloc_sizes_for_a_command(workload):
    res = subprocess.run([sys.executable, "examples/malloc_sizes.py", "c:malloc", "--",
                          workload, "malloc", "100", "3000"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    buckets = {}
    for line in res.stdout.splitlines()[1:]:
        low, _, high, _, count = line.split()[:5]
        if int(count):
            buckets[(int(low), int(high))] = int(count)
    assert buckets == {(2048, 4095): 100}
    assert pytracekit_probes_left() == []


COUNT_CALLS = r"""
#include "vmlinux.h"
#include "pytracekit.h"
struct key_t { u32 pid; char comm[TASK_COMM_LEN]; };
BPF_HASH(calls, struct key_t, u64, 1024);
int on_call(void *ctx)
{
    if (!ptk_selected())
        return 0;
    struct key_t key = { .pid = bpf_get_current_pid_tgid() >> 32 };
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    calls.increment(key);
    return 0;
}
"""


@pytest.mark.root
def test_tracer_reads_maps_as_python_values(workload):
    with Tracer(COUNT_CALLS, command=[workload, "calls", "9"]) as tracer:
        [probe] = tracer.probe(f"{workload}:counted_*", "on_call")
        assert probe.name == "counted_function"
        tracer.start()
        assert tracer.run(duration=30) == "exited"
        pid = tracer.target.pid
        assert tracer.table("calls") == {(pid, "workload"): 9}
        counts = tracer.counts("calls", ("PID", "COMM"))
        assert counts.rows == {(pid, "workload"): 9}
        assert not tracer.loss().any
    assert tracer.prog is None and pytracekit_probes_left() == []

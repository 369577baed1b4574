"""funcslower against the ground-truth workload: `sleep N MS` makes N calls
of sleeper(MS), each at least MS long; `calls N` makes N short calls of
counted_function(i)."""
import pytest

from conftest import pytracekit
from netns_fixture import events_of, json_objects

N, MS = 3, 20


@pytest.mark.root
def test_each_slow_call_with_its_argument_and_latency(workload):
    res = pytracekit("funcslower", "--json", "-m", "5", "-a", "1", f"{workload}:sleeper",
                     f"{workload}:counted_function", "--", workload, "sleep", str(N), str(MS))
    assert res.returncode == 0, res.stderr
    objects = json_objects(res.stdout, "funcslower")
    events = events_of(objects)
    assert [(e["function"], e["args"], e["comm"]) for e in events] == \
        [("sleeper", [MS], "workload")] * N
    assert all(e["lat_ns"] >= MS * 1_000_000 for e in events)
    assert len({e["pid"] for e in events}) == 1
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == N


@pytest.mark.root
def test_thresholds_in_bcc_columns(workload):
    res = pytracekit("funcslower", "-u", "0", "-a", "1", f"{workload}:counted_function", "--",
                     workload, "calls", str(N))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["COMM", "PID", "LAT(us)", "RVAL", "FUNC", "ARGS"]
    rows = [line.split() for line in lines[1:]]
    # counted_function(i) for i in 0..N-1: every call, since -u 0
    assert [(r[0], r[4], r[5]) for r in rows] == \
        [("workload", "counted_function", f"0x{i:x}") for i in range(N)]
    assert f"{N} events captured, 0 lost" in res.stderr
    res = pytracekit("funcslower", "-m", str(MS * 5), f"{workload}:sleeper", "--",
                     workload, "sleep", "2", str(MS))
    assert res.returncode == 0 and res.stdout.splitlines()[1:] == []


def test_usage_errors_are_one_line():
    res = pytracekit("funcslower", "-m", "1", "-u", "5", "c:getpid")
    assert res.returncode == 2 and "exclude each other" in res.stderr
    res = pytracekit("funcslower", "t:syscalls:sys_enter_read")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "whole functions" in res.stderr


def test_kernel_functions_through_trampolines_are_refused(monkeypatch):
    """Where kernel functions attach only through fentry (no kprobes), there is
    no pt_regs for arguments and return value: one clear refusal, before any
    program is loaded."""
    from pytracekit.api import Tracer
    from pytracekit.errors import UsageError
    from pytracekit.probes.specs import ResolvedProbe
    from pytracekit.tools import funcslower
    probe = ResolvedProbe(kind="kprobe", name="do_nanosleep", function="do_nanosleep",
                          mechanism="fentry")
    monkeypatch.setattr(Tracer, "resolve", lambda self, spec, **kw: [probe])
    monkeypatch.setattr(Tracer, "start", lambda self, *a: pytest.fail("loaded a program"))
    with pytest.raises(UsageError, match="funclatency do_nanosleep"):
        funcslower.start(("do_nanosleep",))


@pytest.mark.root
def test_user_stacks_per_slow_call_unwound_without_frame_pointers(workload_nofp):
    """`stacks 1`: stack_leaf once via stack_path_a, twice via stack_path_b;
    the stack is taken at the return, so its leaf is the caller. Built without
    frame pointers: only the in-kernel CFI unwinder gets past the caller."""
    res = pytracekit("funcslower", "--json", "-u", "0", "-U", "-K", f"{workload_nofp}:stack_leaf",
                     "--", workload_nofp, "stacks", "1")
    assert res.returncode == 0, res.stderr
    events = events_of(json_objects(res.stdout, "funcslower"))
    assert [e["user_stack"][:3] for e in events] == \
        [["stack_path_a", "main", "__libc_start_call_main"]] + \
        [["stack_path_b", "main", "__libc_start_call_main"]] * 2
    # a uprobe fires in user mode: there is no kernel stack under it
    assert [e["kernel_stack"] for e in events] == [[]] * 3


@pytest.mark.root
def test_folded_stacks_one_line_per_call(workload):
    res = pytracekit("funcslower", "-f", "-U", "-u", "0", f"{workload}:stack_leaf", "--",
                     workload, "stacks", "1")
    assert res.returncode == 0, res.stderr
    tails = [line.rsplit(";", 3)[1:] for line in res.stdout.splitlines()]
    assert tails == [["__libc_start_call_main", "main", "stack_path_a 1"]] + \
        [["__libc_start_call_main", "main", "stack_path_b 1"]] * 2
    assert all(line.startswith("workload;") for line in res.stdout.splitlines())


def test_folded_needs_a_stack():
    res = pytracekit("funcslower", "-f", "c:getpid")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "-U" in res.stderr

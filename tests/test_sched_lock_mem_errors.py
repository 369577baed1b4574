"""Errors and loss reporting shared by runqlat, runqlen, cpudist, schedlat,
klockstat, mutexstat, faults, kmem and memleak."""
import subprocess

import pytest

from conftest import pytracekit, pytracekit_as_nobody
from sched_helpers import json_lines, validate

TOOLS = ["runqlat", "runqlen", "cpudist", "schedlat", "klockstat", "mutexstat", "faults",
         "kmem", "memleak"]
NEEDS_PID = {"mutexstat", "memleak"}


@pytest.mark.parametrize("tool", TOOLS)
def test_not_root_is_one_clear_line(tool):
    args = ["-p", "1"] if tool in NEEDS_PID else ["-d", "0.1"]
    res = pytracekit_as_nobody(tool, *args)
    assert res.returncode == 1
    assert res.stderr.strip() == (f"pytracekit {tool}: error: pytracekit needs root (CAP_BPF "
                                  "and CAP_PERFMON) to load BPF programs: run it with sudo")


@pytest.mark.parametrize("tool", [t for t in TOOLS if t != "runqlen"])   # system-wide, as in BCC
def test_bad_pid_is_one_clear_line(tool):
    res = pytracekit(tool, "-p", "999999999")
    assert res.returncode == 1
    assert res.stderr.strip() == f"pytracekit {tool}: error: no process with pid 999999999"


@pytest.mark.parametrize("tool", ["runqlat", "cpudist", "memleak"])
def test_pid_and_command_together_is_a_usage_error(tool):
    res = pytracekit(tool, "-p", "1", "--", "true")
    assert res.returncode == 2
    assert res.stderr.strip().endswith("give either -p PID or -- COMMAND, not both")


@pytest.mark.root
def test_missing_tracepoint_names_it():
    from pytracekit.errors import NotFoundError
    from pytracekit.families.periodic import require_tracepoints
    with pytest.raises(NotFoundError) as info:
        require_tracepoints("klockstat", "lock:contention_begin", "lock:contention_bgin")
    assert info.value.message.startswith(
        "klockstat needs tracepoint lock:contention_bgin, which this kernel does not have "
        "(unknown tracepoint lock:contention_bgin")
    assert "\n" not in info.value.message


@pytest.mark.root
def test_missing_command_is_one_clear_line():
    res = pytracekit("cpudist", "--", "/nonexistent/prog")
    assert res.returncode == 1
    assert res.stderr.strip().endswith("cannot run /nonexistent/prog: No such file or directory"
                                       " (give a path to an executable or a command on PATH)")


@pytest.mark.root
def test_map_full_is_counted_and_reported(workload):
    res = pytracekit("memleak", "--json", "--max-allocs", "3", "-o", "0", "--", workload,
                     "leak", "7", "3000")
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("memleak", objs)
    loss = objs[-1]
    assert loss["type"] == "loss" and loss["map_full"] >= 4
    assert sum(o["allocations"] for o in objs if o["type"] == "outstanding") <= 3
    assert f"WARNING: {loss['map_full']} updates dropped (map full)" in res.stderr


@pytest.mark.root
@pytest.mark.parametrize("tool,args", [("runqlat", []), ("klockstat", []),
                                       ("memleak", ["-o", "0"])])
def test_sigterm_prints_results_and_detaches(tool, args, workload):
    import signal
    from conftest import Tool, pytracekit_probes_left
    proc = subprocess.Popen([workload, "sleep", "500", "20"])
    try:
        extra = ["-p", str(proc.pid)] if tool == "memleak" else []
        with Tool(tool, "--json", *args, *extra) as running:
            out, err = running.stop(signal.SIGTERM)
    finally:
        proc.kill()
        proc.wait()
    assert running.returncode == 0, err
    assert "Traceback" not in err
    assert json_lines(out)[-1]["type"] == "loss"
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_process_gone_before_attach_is_one_clear_line():
    from pytracekit.errors import NotFoundError
    from pytracekit.families.periodic import require_alive
    proc = subprocess.Popen(["true"])
    proc.wait()
    with pytest.raises(NotFoundError) as info:
        require_alive(proc.pid)
    assert info.value.message == f"process {proc.pid} exited before its probes were attached"

"""funccount on the ground-truth workload: exact counts through uprobes and
tracepoints, for a pid, for a command, and every error a user can make."""
import os
import signal

import pytest

from conftest import Tool, pytracekit, pytracekit_probes_left, run_workload
from probe_helpers import one_error_line, open_fds, traced_pid_run, validated_json_lines

pytestmark = pytest.mark.root
N = 1234


def counts_of(out: str) -> dict[str, int]:
    lines = out.strip().splitlines()
    assert lines[0].split() == ["FUNC", "COUNT"], out
    return {name: int(count) for name, count in (l.rsplit(None, 1) for l in lines[1:])}


def test_counts_exactly_n_calls_of_a_command(workload):
    res = pytracekit("funccount", f"{workload}:counted_function", "--", workload, "calls", str(N))
    assert res.returncode == 0, res.stderr
    assert counts_of(res.stdout) == {"counted_function": N}
    assert 'Tracing 1 function for' in res.stderr and "Detaching..." in res.stderr
    assert pytracekit_probes_left() == []


def test_counts_exactly_n_calls_of_a_pid(workload, tmp_path):
    out, err, rc = traced_pid_run(["funccount", f"{workload}:counted_*"], workload,
                                  ["calls", str(N)], tmp_path)
    assert rc == 0, err
    assert counts_of(out) == {"counted_function": N}


def test_tracepoint_counts_the_opens_of_one_pid(workload, tmp_path):
    out, err, rc = traced_pid_run(["funccount", "t:syscalls:sys_enter_openat"], workload,
                                  ["open", str(tmp_path / "marker"), "37"], tmp_path)
    assert rc == 0, err
    assert counts_of(out) == {"syscalls:sys_enter_openat": 37}


def test_wildcard_and_regex_expand_to_several_probes(workload):
    res = pytracekit("funccount", "-r", f"{workload}:stack_(leaf|path_a)", "--",
                     workload, "stacks", "5")
    assert res.returncode == 0, res.stderr
    assert counts_of(res.stdout) == {"stack_path_a": 5, "stack_leaf": 15}
    assert 'Tracing 2 functions for' in res.stderr


def test_json_lines_follow_the_schema(workload):
    res = pytracekit("funccount", "--json", f"{workload}:counted_function", "--",
                     workload, "calls", "7")
    assert res.returncode == 0, res.stderr
    objs = validated_json_lines("funccount", res.stdout)
    assert objs[0] == {"type": "count", "function": "counted_function", "count": 7}
    assert objs[-1]["type"] == "loss" and objs[-1]["map_full"] == 0


def test_cpu_filter_counts_only_that_cpu(workload):
    res = pytracekit("funccount", "-c", "0", f"{workload}:counted_function", "--",
                     "taskset", "-c", "1", workload, "calls", "50")
    assert res.returncode == 0, res.stderr
    assert counts_of(res.stdout) == {}
    res = pytracekit("funccount", "-c", "1", f"{workload}:counted_function", "--",
                     "taskset", "-c", "1", workload, "calls", "50")
    assert counts_of(res.stdout) == {"counted_function": 50}


@pytest.mark.parametrize("args, status, words", [
    (["vfs_read"], 1, "no kprobes"),
    (["nothing_here_*"], 1, "no kprobes"),
    (["t:syscalls:sys_enter_nosuch"], 1, "unknown tracepoint syscalls:sys_enter_nosuch"),
    (["t:nosuch*:*"], 1, "no tracepoint matches"),
    (["/no/such/binary:main"], 1, "no such binary or library: /no/such/binary"),
    (["x:y:z"], 2, "unknown probe type 'x'"),
    (["c:malloc+zz"], 2, "the offset is not a number"),
    (["-p", "999999", "c:malloc"], 1, "no process with pid 999999"),
])
def test_errors_are_one_line(args, status, words):
    line = one_error_line(pytracekit("funccount", *args), status)
    assert line.startswith("pytracekit funccount: error: ") and words in line


def test_kernel_function_error_suggests_tracepoints():
    line = one_error_line(pytracekit("funccount", "vfs_read"), 1)
    assert "no kprobes" in line and "no fentry" in line
    assert "t:syscalls:sys_enter_read" in line


def test_wildcard_matching_nothing_names_the_binary(workload):
    line = one_error_line(pytracekit("funccount", f"{workload}:zzz_*"), 1)
    assert f"no function in {os.path.abspath(workload)} matches 'zzz_*'" in line


def test_usdt_probe_of_a_running_python(tmp_path):
    from usdt_helpers import traced_python_gc
    out, err, returncode = traced_python_gc(
        ["funccount", "u:/usr/bin/python3.11:gc__start"], 7, tmp_path)
    assert returncode == 0, err
    assert counts_of(out) == {"gc__start": 7}


@pytest.mark.parametrize("command", [[], ["--", "/usr/bin/python3.11", "-c", "pass"]])
def test_usdt_semaphore_probe_without_a_running_pid_says_what_works(command):
    line = one_error_line(pytracekit("funccount", "u:/usr/bin/python3.11:gc__start", *command), 2)
    assert "is guarded by a semaphore" in line and "give -p PID" in line


def test_interval_prints_one_table_per_interval_with_timestamps():
    res = pytracekit("funccount", "-T", "-i", "0.4", "-d", "0.8", "t:syscalls:sys_enter_getppid")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines.count(f"{'FUNC':<36} {'COUNT':>8}") == 2
    stamps = [l for l in lines if len(l) == 8 and l.count(":") == 2]
    assert len(stamps) == 2


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_prints_counts_and_detaches(workload, sig):
    with Tool("funccount", f"{workload}:counted_function") as tool:
        run_workload(workload, "calls", "11")
        out, err = tool.stop(sig)
    assert tool.returncode == 0, err
    assert counts_of(out) == {"counted_function": 11}
    assert "Traceback" not in err
    assert pytracekit_probes_left() == []


def test_pid_and_command_together_is_a_usage_error(workload):
    line = one_error_line(pytracekit("funccount", "-p", str(os.getpid()),
                                     f"{workload}:counted_function", "--", "true"), 2)
    assert "either -p PID or -- COMMAND" in line


def test_command_that_cannot_run_is_one_error_line(workload):
    res = pytracekit("funccount", f"{workload}:counted_function", "--", "/no/such/command")
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    # checked before compiling, so no "Tracing..." line comes first
    assert lines == ["pytracekit funccount: error: cannot run /no/such/command: "
                     "No such file or directory (give a path to an executable or a command on PATH)"]
    assert pytracekit_probes_left() == []


def test_offset_into_a_function(workload):
    # counted_function+4 is after `push %rbp; mov %rsp,%rbp`: an instruction boundary
    res = pytracekit("funccount", f"p:{workload}:counted_function+4", "--", workload, "calls", "33")
    assert res.returncode == 0, res.stderr
    assert counts_of(res.stdout) == {"counted_function+0x4": 33}


STACKS = {("stack_leaf",): 18, ("stack_path_a",): 6, ("stack_path_b",): 12}


def count_stacks_in_process(workload):
    """funccount.start() on stack_* of `workload stacks 6`, in this process:
    (probe kinds, perf event fds and bpf_link fds added while attached, counts)."""
    from pytracekit.tools import funccount
    perf, link = "anon_inode:[perf_event]", "anon_inode:bpf_link"
    before = open_fds(perf), open_fds(link)
    counter = funccount.start(f"{workload}:stack_*", command=(workload, "stacks", "6"),
                              announce=False)
    try:
        kinds = [p.kind for p in counter.tracer.prog.probes]
        added = open_fds(perf) - before[0], open_fds(link) - before[1]
        assert counter.tracer.run(duration=30) == "exited"
        rows = counter.read().rows
    finally:
        counter.close()
    assert (open_fds(perf), open_fds(link)) == before
    return kinds, added, rows


# The held command's FILTER_PID passes from its exec on (FILTER_AFTER_EXEC in
# pytracekit.h): one raw tracepoint on sched_process_exec, a bpf_link fd.
EXEC_GATE = 1


def test_uprobes_share_one_uprobe_multi_link(workload):
    kinds, (perf_events, links), rows = count_stacks_in_process(workload)
    assert kinds == ["uprobe_multi"] * 3
    assert (perf_events, links) == (0, 1 + EXEC_GATE)
    assert rows == STACKS


def test_without_uprobe_multi_each_uprobe_is_a_perf_event(workload, monkeypatch):
    from pytracekit.kernel import features
    monkeypatch.setattr(features, "uprobe_multi_available", lambda: (False, "forced off"))
    kinds, (perf_events, links), rows = count_stacks_in_process(workload)
    assert kinds == ["uprobe"] * 3
    assert (perf_events, links) == (3, EXEC_GATE)
    assert rows == STACKS


def test_every_function_of_a_binary_in_one_link(workload):
    res = pytracekit("funccount", f"{workload}:*", "--", workload, "calls", str(N))
    assert res.returncode == 0, res.stderr
    counts = counts_of(res.stdout)
    assert counts["counted_function"] == N and counts["main"] == 1
    assert "stack_leaf" not in counts      # never called in this mode: not printed
    assert pytracekit_probes_left() == []


def test_dry_run_loads_the_uprobe_multi_program_only(workload):
    res = pytracekit("funccount", "--dry-run", f"{workload}:stack_*")
    assert res.returncode == 0, res.stderr
    assert "count_multi" in res.stdout + res.stderr

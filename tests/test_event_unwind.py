"""The event tools' user stacks from the in-kernel unwinder (bpf/ptk_ustack.h,
pytracekit/collect/user_stacks.py): the workload built -O2 without frame pointers gives
the whole stack from `_start` to the probed function, with exact counts, in
stackcount, trace -U, faults, memleak and mutexstat (a frame-pointer walk
of the same binary gives the leaf and garbage above it)."""
import json
import os
import subprocess

import pytest

from conftest import Tool, pytracekit

ROOT = "_start;__libc_start_main;__libc_start_call_main;main"
NOT_LOADED = "[frame pointers: process not loaded yet]"
N = 5


def _folded(stdout: str) -> dict[str, int]:
    out = {}
    for line in stdout.splitlines():
        if line and line[-1].isdigit() and ";" in line:
            stack, count = line.rsplit(" ", 1)
            out[stack] = out.get(stack, 0) + int(count)
    return out


@pytest.mark.root
def test_stackcount_command_stacks_are_whole_and_exact(workload_nofp):
    res = pytracekit("stackcount", "-f", "-U", f"{workload_nofp}:stack_leaf", "--",
                     workload_nofp, "stacks", str(N))
    assert res.returncode == 0, res.stderr
    assert _folded(res.stdout) == {f"{ROOT};stack_path_a;stack_leaf": N,
                                   f"{ROOT};stack_path_b;stack_leaf": 2 * N}, res.stdout


@pytest.mark.root
def test_stackcount_frame_pointer_option_keeps_the_kernel_walk(workload_nofp):
    # the same binary through --unwind fp: no caller above the leaf is right
    res = pytracekit("stackcount", "-f", "-U", "--unwind", "fp", f"{workload_nofp}:stack_leaf",
                     "--", workload_nofp, "stacks", str(N))
    assert res.returncode == 0, res.stderr
    stacks = _folded(res.stdout) or {line.rsplit(" ", 1)[0]: int(line.rsplit(" ", 1)[1])
                                     for line in res.stdout.splitlines() if line.strip()}
    assert sum(stacks.values()) == 3 * N, res.stdout
    assert all(s.endswith("stack_leaf") and "stack_path" not in s for s in stacks), stacks


@pytest.mark.root
def test_stackcount_pid_is_loaded_before_its_events(workload_nofp, tmp_path):
    go = tmp_path / "go"
    proc = subprocess.Popen([workload_nofp, "--go-file", str(go), "stacks", str(N)])
    try:
        with Tool("stackcount", "-f", "-U", "-p", str(proc.pid),
                  f"{workload_nofp}:stack_leaf") as tool:
            go.touch()
            proc.wait(timeout=30)
            out, err = tool.stop()
    finally:
        proc.kill()
        proc.wait()
    comm = os.path.basename(workload_nofp)[:15]
    assert _folded(out) == {f"{comm};{ROOT};stack_path_a;stack_leaf": N,
                            f"{comm};{ROOT};stack_path_b;stack_leaf": 2 * N}, (out, err)


@pytest.mark.root
@pytest.mark.alone   # system-wide on sleeper(): another test's workload was counted (31 of 20)
def test_stackcount_system_wide_loads_processes_as_they_appear(workload_nofp):
    # a process is loaded once announced by its first event: that one (and any
    # before its load) takes the frame-pointer walk, the later ones unwind
    n = 20
    with Tool("stackcount", "-f", "-U", f"{workload_nofp}:sleeper") as tool:
        subprocess.run([workload_nofp, "sleep", str(n), "50"], check=True, timeout=60)
        out, err = tool.stop()
    stacks = {}
    for line in out.splitlines():
        if line.strip() and line[-1].isdigit():
            stack, count = line.rsplit(" ", 1)
            stacks[stack] = stacks.get(stack, 0) + int(count)
    assert sum(stacks.values()) == n, (out, err)
    assert stacks.get(f"{ROOT};sleeper", 0) >= n // 2, stacks
    # the first event (it announces the process) and any before its load are
    # frame-pointer walks: rooted in the marker and counted, never shown as whole
    marked = sum(v for k, v in stacks.items() if k.startswith(f"{NOT_LOADED};"))
    assert set(stacks) - {f"{ROOT};sleeper"} == {k for k in stacks if k.startswith(
        f"{NOT_LOADED};")}, stacks
    assert marked >= 1, stacks
    assert f"{marked} user stacks by frame pointers (process not loaded yet)" in err, err
    assert all(s.endswith("sleeper") for s in stacks), stacks


@pytest.mark.root
def test_trace_user_stacks_are_whole_per_event(workload_nofp):
    res = pytracekit("trace", "-U", "--json", f"{workload_nofp}:stack_leaf", "--",
                     workload_nofp, "stacks", "2")
    assert res.returncode == 0, res.stderr
    events = [json.loads(l) for l in res.stdout.splitlines() if '"type":"event"' in l]
    leaf_first = list(reversed(ROOT.split(";")))
    assert [e["user_stack"] for e in events] == \
        [["stack_leaf", "stack_path_a", *leaf_first]] * 2 + \
        [["stack_leaf", "stack_path_b", *leaf_first]] * 4, res.stdout


@pytest.mark.root
def test_faults_touch_stack_is_whole_and_exact(workload_nofp):
    res = pytracekit("faults", "-U", "-f", "--", workload_nofp, "touch", "64", "0")
    assert res.returncode == 0, res.stderr
    comm = os.path.basename(workload_nofp)[:15]
    touching = {s: c for s, c in _folded(res.stdout).items() if s.endswith("touch_pages")}
    assert touching == {f"{comm};{ROOT};touch_pages": 64}, res.stdout


@pytest.mark.root
def test_memleak_leak_stack_is_whole_and_exact(workload_nofp):
    res = pytracekit("memleak", "--json", "-o", "0", "--", workload_nofp, "leak", str(N), "4000")
    assert res.returncode == 0, res.stderr
    objs = [json.loads(l) for l in res.stdout.splitlines()]
    leaks = [o for o in objs if o["type"] == "outstanding" and o["frames"]
             and o["frames"][0]["name"] == "leak_alloc"]
    assert [(o["bytes"], o["allocations"], [f["name"] for f in o["frames"]]) for o in leaks] == \
        [(N * 4000, N, ["leak_alloc", "leak_path", *reversed(ROOT.split(";"))])], res.stdout


@pytest.mark.root
def test_mutexstat_sites_have_whole_stacks(workload_nofp):
    res = pytracekit("mutexstat", "-a", "--json", "--", workload_nofp, "mutexhandoff",
                     str(N), "5")
    assert res.returncode == 0, res.stderr
    sites = {tuple(o["frames"]): o for o in map(json.loads, res.stdout.splitlines())
             if o["type"] == "mutex" and o["mutex_name"].startswith("handoff ")}
    worker = ("handoff_worker", "start_thread", "__clone3")
    main = tuple(reversed(ROOT.split(";")))
    assert set(sites) == {worker, main}, res.stdout
    assert (sites[worker]["acquisitions"], sites[worker]["contended"]) == (N, N)
    assert (sites[main]["acquisitions"], sites[main]["contended"]) == (N, 0)

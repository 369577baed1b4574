"""deadlock against the workload's lockorder mode (thread lock_ab takes lock_a
then lock_b; a later thread lock_ba takes lock_b then lock_a: an inversion
that never deadlocks) and its mutex mode (one mutex: no order at all)."""
import re
import subprocess

import pytest

from conftest import Tool, pytracekit
from snoop_helpers import validated_json


@pytest.mark.root
def test_inversion_found_with_both_threads_and_their_creation(workload):
    res = pytracekit("deadlock", "--json", "--", workload, "lockorder")
    assert res.returncode == 0, res.stderr
    objects = validated_json("deadlock", res.stdout)
    assert [o["type"] for o in objects] == ["cycle", "loss"]
    cycle = objects[0]
    names = [m["name"] for m in cycle["mutexes"]]
    assert sorted(names) == ["lock_a [workload]", "lock_b [workload]"]
    by_order = {(names[i], names[1 - i]): e for i, e in enumerate(cycle["edges"])}
    ab = by_order["lock_a [workload]", "lock_b [workload]"]
    ba = by_order["lock_b [workload]", "lock_a [workload]"]
    # each taken in its function (the caller a walk from the entry skips is there)
    assert ab["wanted_stack"][:2] == ab["held_stack"][:2] == ["pthread_mutex_lock", "lock_ab"]
    assert ba["wanted_stack"][:2] == ba["held_stack"][:2] == ["pthread_mutex_lock", "lock_ba"]
    assert ab["tid"] != ba["tid"] and {t["tid"] for t in cycle["threads"]} == {ab["tid"], ba["tid"]}
    for thread in cycle["threads"]:
        assert thread["stack"][:3] == ["pthread_create", "lock_order", "main"], thread
    assert objects[1]["map_full"] == 0 and objects[1]["stack_errors"] == 0


THREAD_ROOT = ["start_thread", "__clone3"]
MAIN_ROOT = ["main", "__libc_start_call_main", "__libc_start_main", "_start"]


@pytest.mark.root
def test_stacks_of_code_without_frame_pointers_are_whole(workload_nofp):
    # -O2 without frame pointers: a frame-pointer walk loses everything above
    # the caller it puts back; unwound from CFI, each stack reaches its root
    res = pytracekit("deadlock", "--json", "--", workload_nofp, "lockorder")
    assert res.returncode == 0, res.stderr
    objects = validated_json("deadlock", res.stdout)
    assert [o["type"] for o in objects] == ["cycle", "loss"]
    cycle = objects[0]
    by_thread_fn = {e["held_stack"][1]: e for e in cycle["edges"]}
    assert set(by_thread_fn) == {"lock_ab", "lock_ba"}
    for fn, e in by_thread_fn.items():
        assert e["held_stack"] == e["wanted_stack"] == ["pthread_mutex_lock", fn, *THREAD_ROOT]
    assert len(cycle["threads"]) == 2
    for thread in cycle["threads"]:
        assert thread["stack"] == ["pthread_create", "lock_order", *MAIN_ROOT], thread
    loss = objects[1]
    assert loss["stack_errors"] == loss["unknown_frames"] == 0, loss
    # the held command's mappings were loaded before it ran: no frame-pointer fallback
    assert loss["unwind_fallback"] == loss["unwind_incomplete"] == 0, loss


@pytest.mark.root
def test_bcc_positional_pid_and_layout(workload, tmp_path):
    go = tmp_path / "go"
    proc = subprocess.Popen([workload, "--go-file", str(go), "lockorder", "20000"])
    try:
        with Tool("deadlock", str(proc.pid)) as tool:
            go.touch()
            out, err = tool.wait(timeout=30)     # it stops once it has found the cycle
        assert tool.returncode == 0, err
        assert proc.poll() is None               # ... before the process ends
    finally:
        proc.kill()
        proc.wait()
    lines = out.splitlines()
    assert lines[:2] == ["----------------", "Potential Deadlock Detected!"]
    assert lines[3].startswith("Cycle in lock order graph: Mutex M0 (lock_")
    assert lines[3].count(" => ") == 2
    held = [l for l in lines if " acquired here while holding " in l]
    assert len(held) == 2 and all(f"({'workload'}):" in l for l in held)
    assert sum(l.startswith("Thread ") and " created by Thread " in l for l in lines) == 2
    assert any(l.startswith("@ ") and l.endswith(" lock_ba") for l in lines)


@pytest.mark.root
def test_one_mutex_has_no_order(workload):
    res = pytracekit("deadlock", "--", workload, "mutex", "200")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "No potential deadlock found (0 mutexes in 0 lock-order edges).\n"


def test_needs_a_process():
    res = pytracekit("deadlock", "--duration", "1")
    assert res.returncode == 2
    assert "give its PID" in res.stderr and res.stderr.count("\n") == 1


@pytest.mark.root
def test_dump_graph_writes_bcc_node_link_json(workload, tmp_path):
    """--dump-graph (BCC's): the mutex graph as node-link JSON, both edges
    of the lockorder inversion, each by its own thread, where it took them."""
    import json
    path = tmp_path / "graph.json"
    res = pytracekit("deadlock", "--dump-graph", str(path), "--", workload, "lockorder")
    assert res.returncode == 0, res.stderr
    graph = json.loads(path.read_text())
    assert (graph["directed"], graph["multigraph"], graph["graph"]) == (True, False, {})
    names = [n["name"] for n in graph["nodes"]]
    assert sorted(names) == ["lock_a [workload]", "lock_b [workload]"]
    assert {n["id"] for n in graph["nodes"]} == \
        {int(x, 16) for x in re.findall(r"\(lock_\w \[workload\] 0x([0-9a-f]+)\)", res.stdout)}
    links = {(names[l["source"]], names[l["target"]]): l for l in graph["links"]}
    assert set(links) == {("lock_a [workload]", "lock_b [workload]"),
                          ("lock_b [workload]", "lock_a [workload]")}
    ab, ba = links["lock_a [workload]", "lock_b [workload]"], \
        links["lock_b [workload]", "lock_a [workload]"]
    assert ab["thread_pid"] != ba["thread_pid"] and ab["thread_comm"] == "workload"
    assert ab["first_mutex_stack"][:2] == ["pthread_mutex_lock", "lock_ab"]
    assert ba["second_mutex_stack"][:2] == ["pthread_mutex_lock", "lock_ba"]
    assert all(isinstance(l[k], int) for l in graph["links"]
               for k in ("first_mutex_stack_id", "second_mutex_stack_id"))


def test_dump_graph_to_a_missing_directory_is_a_usage_error(tmp_path):
    res = pytracekit("deadlock", "--dump-graph", str(tmp_path / "no" / "g.json"), "-p", "1")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no directory" in res.stderr

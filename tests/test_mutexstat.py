"""mutexstat against `workload mutexlinger N`: two threads take the global
mutex `contended` N times each from mutex_worker, holding it 200 us; main
holds it for the first 100 ms, so each worker's first lock waits."""
import pytest

from conftest import pytracekit, pytracekit_probes_left
from interval_helpers import per_interval, text_tables
from sched_helpers import json_lines, validate
from pytracekit.model import Frame
from pytracekit.tools.mutexstat import MutexSite, render

N = 25


@pytest.mark.root
def test_mutexstat_counts_contention_on_the_workload_mutex(workload):
    res = pytracekit("mutexstat", "--json", "--", workload, "mutexlinger", str(N))
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("mutexstat", objs)
    (site,) = [o for o in objs
               if o["type"] == "mutex" and o["mutex_name"] == "contended [workload]"]
    assert site["frames"][0] == "mutex_worker"
    assert site["frames"][1] == "start_thread"
    assert site["acquisitions"] == 2 * N
    assert 2 <= site["contended"] <= 2 * N
    assert site["wait_max_ns"] >= 50_000_000    # the first waits last until main unlocks
    assert site["wait_max_ns"] <= site["wait_total_ns"]
    assert site["hold_total_ns"] >= 2 * N * 200_000      # busy_call(200 us) under the lock
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_mutexstat_frame_pointer_stacks_keep_the_caller(workload):
    """--unwind fp: the walk at the lock's probe (before pthread_mutex_lock
    pushes anything) skips its caller; the return address kept in the key
    puts mutex_worker back first (it was missing: start_thread came first)."""
    res = pytracekit("mutexstat", "--unwind", "fp", "--json", "--", workload, "mutexlinger",
                     "5")
    assert res.returncode == 0, res.stderr
    (site,) = [o for o in json_lines(res.stdout)
               if o["type"] == "mutex" and o["mutex_name"] == "contended [workload]"]
    assert site["frames"][:2] == ["mutex_worker", "start_thread"], site["frames"]
    assert site["acquisitions"] == 10


@pytest.mark.root
def test_mutexstat_text_names_the_mutex_and_stack(workload):
    res = pytracekit("mutexstat", "-s", "1", "--", workload, "mutexlinger", "10")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    row = next(i for i, l in enumerate(lines) if l.startswith("contended [workload]"))
    assert lines[row].split()[2] == "20"
    assert lines[row + 1].strip().startswith("mutex_worker+0x")


def test_mutexstat_needs_a_process():
    res = pytracekit("mutexstat")
    assert res.returncode == 2 and "give -p PID or -- COMMAND" in res.stderr


def test_missing_library_is_one_clear_line():
    res = pytracekit("mutexstat", "-O", "/nonexistent/libfoo.so", "-p", "1")
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "pthread_mutex_lock" in res.stderr


def test_render_hides_uncontended_sites_unless_asked():
    a = MutexSite(1, "m1", 5, [Frame("f")], 4, 0, 0, 0, 10, 5, 4)
    b = MutexSite(2, "m2", 5, [Frame("g")], 6, 2, 3000, 2000, 10, 5, 6)
    text = render([a, b])
    assert "m2" in text and "m1" not in text
    assert "m1" in render([a, b], all_sites=True)


HANDOFF_N, HANDOFF_MS = 3, 150   # every wait and every hold spans a 0.1 s boundary


@pytest.mark.root
def test_mutexstat_interval_json_counts_each_wait_and_hold_once(workload):
    """`mutexhandoff 3 150`: handoff_worker's 3 locks each wait >= 150 ms and
    main's 3 locks are each held >= 150 ms, so each starts in one 0.1 s
    interval and ends in another; each counts once, where it ends."""
    res = pytracekit("mutexstat", "-a", "--json", "-i", "0.1", "--", workload, "mutexhandoff",
                     str(HANDOFF_N), str(HANDOFF_MS))
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("mutexstat", objs)

    def handoff_from(func):
        return lambda o: o["mutex_name"] == "handoff [workload]" and o["frames"][:1] == [func]

    worker, main = handoff_from("handoff_worker"), handoff_from("main")
    assert sum(per_interval(objs, "acquisitions", worker).values()) == HANDOFF_N
    contended = per_interval(objs, "contended", worker)
    assert sum(contended.values()) == HANDOFF_N
    assert len([n for n in contended.values() if n]) >= 2      # in different tables
    assert sum(per_interval(objs, "holds", worker).values()) == HANDOFF_N
    assert sum(per_interval(objs, "acquisitions", main).values()) == HANDOFF_N
    assert sum(per_interval(objs, "contended", main).values()) == 0
    assert sum(per_interval(objs, "holds", main).values()) == HANDOFF_N
    waits = [o for o in objs if o["type"] == "mutex" and worker(o) and o["contended"]]
    # each wait measured whole, from its lock call in an earlier interval
    assert all(o["wait_max_ns"] >= HANDOFF_MS * 1_000_000 for o in waits)
    assert sum(per_interval(objs, "wait_total_ns", worker).values()) \
        >= HANDOFF_N * HANDOFF_MS * 1_000_000
    assert sum(per_interval(objs, "hold_total_ns", main).values()) \
        >= HANDOFF_N * HANDOFF_MS * 1_000_000


@pytest.mark.root
def test_mutexstat_interval_text_tables(workload):
    res = pytracekit("mutexstat", "-s", "1", "--interval", "0.1", "--", workload,
                     "mutexhandoff", str(HANDOFF_N), str(HANDOFF_MS))
    assert res.returncode == 0, res.stderr
    tables = text_tables(res.stdout)
    assert len(tables) >= 5
    contended = []
    for table in tables:
        assert table[0].startswith("Mutex ") and "Contended" in table[0]
        for row, frame in zip(table, table[1:]):
            if row.startswith("handoff [workload]") and frame.strip().startswith("handoff_worker+"):
                contended.append(int(row.split()[3]))
    assert sum(contended) == HANDOFF_N and len(contended) >= 2


@pytest.mark.root
def test_mutexstat_condition_wait_relocks_are_not_lock_calls(workload):
    """`mutexcond 5`: cond_waiter's one lock call is uncontended; the relocks
    inside its 5 pthread_cond_waits each sleep in futex on the mutex (main holds
    it until they do) but belong to no lock call: neither contended nor a wait."""
    res = pytracekit("mutexstat", "-a", "--json", "--", workload, "mutexcond", "5")
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("mutexstat", objs)
    sites = {o["frames"][0]: o for o in objs
             if o["type"] == "mutex" and o["mutex_name"] == "condlock [workload]"}
    assert set(sites) == {"cond_waiter", "main"}, res.stdout
    waiter, main = sites["cond_waiter"], sites["main"]
    assert (waiter["acquisitions"], waiter["contended"], waiter["holds"]) == (1, 0, 1)
    assert waiter["wait_total_ns"] == 0
    assert (main["acquisitions"], main["holds"]) == (5, 5)
    assert pytracekit_probes_left() == []


def test_a_frame_pointer_fallback_site_is_rooted_in_its_marker_in_text_and_json():
    # a process the unwinder had not loaded yet: the kernel's frame-pointer
    # walk (counted as unwind_fallback), its leaf (the lock) dropped as always
    import os
    from types import SimpleNamespace
    from stack_checks import fallback_symbolizer
    from pytracekit.tools.mutexstat import Mutexstat
    tool = Mutexstat(prog=None, symbolizer=fallback_symbolizer(7, [0x1000, 0x2000]))
    frames = tool._frames(SimpleNamespace(user_stack_hash=7, pid=os.getpid(), caller=0))
    site = MutexSite(0x10, "m", os.getpid(), frames, 2, 1, 5, 5, 9, 9, 2)
    marker = "[frame pointers: process not loaded yet]"
    assert site.as_dict()["frames"] == ["[unknown]+0x2000", marker]
    validate("mutexstat", [site.as_dict()])
    assert render([site]).splitlines()[-1] == f"    {marker}"

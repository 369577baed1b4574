"""wakeuptime: who wakes the sleeping workload (the timer interrupt), and for how long."""
import pytest

from conftest import pytracekit, pytracekit_probes_left
from stack_checks import names, parse_json, split_slept


@pytest.mark.root
def test_sleeps_are_charged_to_the_timer_wakeup(workload):
    res = pytracekit("wakeuptime", "--json", "--", workload, "sleeptimed", "5", "40")
    assert res.returncode == 0, res.stderr
    slept, out = split_slept(res.stdout)
    header, stacks, loss = parse_json(out, "wakeuptime")
    assert header["unit"] == "microseconds" and header["value_type"] == "wakeup"
    woke_workload = [s for s in stacks if s["frames"][-1]["name"] == "workload"]
    # each 40 ms sleep is charged to its waker, or (its wakeup reached no
    # tracepoint: bpf/ptk_sched.h) counted as unseen; all of it within the
    # wall time the workload measured around the sleeps
    sleeps = 5 - loss["unseen"]
    assert sleeps * 36_000 <= sum(s["value"] for s in woke_workload) <= slept["slept_ns"] / 1000, \
        res.stdout
    # the timer wakes it, either on this CPU or, queued to the sleeper's CPU, from
    # the scheduler IPI there (sched_ttwu_pending): both are kernel stacks
    timer = sum(s["value"] for s in woke_workload
                if {"hrtimer_wakeup", "sched_ttwu_pending"} & set(names(s, "kernel")))
    assert timer >= 0.9 * sum(s["value"] for s in woke_workload), res.stdout
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_text_layout_names_target_and_waker(workload):
    res = pytracekit("wakeuptime", "-K", "--", workload, "sleep", "3", "20")
    assert res.returncode == 0, res.stderr
    block = next(b for b in res.stdout.split("\n\n") if "hrtimer_wakeup" in b)
    lines = block.strip("\n").splitlines()
    assert lines[0].split() == ["target:", "workload"]
    assert lines[1].strip() == "ttwu_do_activate" or "try_to_wake_up" in block
    assert lines[-2].split()[0] == "waker:"


def test_thread_kind_filters_are_refused():
    res = pytracekit("wakeuptime", "-u", "1")
    assert res.returncode == 2 and "does not filter by thread kind" in res.stderr

"""offwaketime: the sleeper's blocked stack joined with the stack that woke it."""
import pytest

from conftest import pytracekit, pytracekit_probes_left
from stack_checks import contains_run, parse_json, split_slept


def _split(stack):
    """(blocked frames, waker frames) around the `--` marker."""
    frames = [f["name"] for f in stack["frames"]]
    cut = frames.index("--")
    return frames[:cut], frames[cut + 1:]


@pytest.mark.root
def test_sleeper_stack_with_timer_waker(workload):
    res = pytracekit("offwaketime", "--json", "--", workload, "sleeptimed", "5", "40")
    assert res.returncode == 0, res.stderr
    slept, out = split_slept(res.stdout)
    _, stacks, _ = parse_json(out, "offwaketime")
    blocked_us = timer_us = 0
    for s in stacks:
        blocked, waker = _split(s)
        if contains_run(blocked, ["main", "sleeper", "nanosleep", "clock_nanosleep"]) \
                and "do_nanosleep" in blocked:
            blocked_us += s["value"]
            timer = {"hrtimer_wakeup", "sched_ttwu_pending"} & set(waker)   # local or IPI
            timer_us += s["value"] if timer else 0
    # off CPU from each sleep's switch-out to its switch-in, inside the wall
    # time the workload measured around the sleeps (a loaded run queue delays
    # the switch-in); a switch-in no tracepoint reported closes the block at
    # the CPU's last traced switch (bpf/ptk_sched.h), a little early
    assert 180_000 <= blocked_us <= slept["slept_ns"] / 1000, res.stdout
    # woken by the timer (on this CPU, or by the scheduler IPI on the sleeper's);
    # a waker stack lost to a stack map collision is counted as a loss instead
    assert timer_us >= 0.75 * blocked_us, res.stdout
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_mutex_waiter_is_woken_by_the_other_thread_unlocking(workload):
    res = pytracekit("offwaketime", "-f", "--", workload, "mutex", "100")
    assert res.returncode == 0, res.stderr
    lines = [l for l in res.stdout.splitlines()
             if l.startswith("workload;") and ";futex_wait;" in l and ";futex_wake;" in l]
    assert lines, res.stdout
    assert all(l.rsplit(" ", 1)[0].endswith(";workload") for l in lines)

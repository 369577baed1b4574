"""offcputime: real sched_switch tracing of the sleeping workload."""
import pytest

from conftest import pytracekit, pytracekit_probes_left
from stack_checks import contains_run, names, parse_json, split_slept

KERNEL_SLEEP = ["do_nanosleep", "schedule", "__schedule"]
# libc has no frame pointers: `sleeper` and `nanosleep` are there only because
# the leaf is unwound with .eh_frame (pytracekit/symbolize/unwind.py)
SLEEPER = ["main", "sleeper", "nanosleep", "clock_nanosleep"]


def _sleeper_us(stacks):
    return sum(s["value"] for s in stacks
               if contains_run(names(s, "user"), SLEEPER)
               and contains_run(names(s, "kernel"), KERNEL_SLEEP))


@pytest.mark.root
def test_ten_sleeps_of_50ms_are_500ms_off_cpu(workload):
    res = pytracekit("offcputime", "--json", "--", workload, "sleeptimed", "10", "50")
    assert res.returncode == 0, res.stderr
    slept, out = split_slept(res.stdout)
    header, stacks, loss = parse_json(out, "offcputime")
    assert header["unit"] == "microseconds" and header["value_type"] == "off_cpu"
    # within the wall time the workload measured around its sleeps (a loaded
    # run queue delays their switch-ins)
    assert 450_000 <= _sleeper_us(stacks) <= slept["slept_ns"] / 1000, res.stdout
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_min_block_time_filters_and_folded_output(workload):
    # 20 sleeps of 5 ms: each under -m 20000 us (as the workload measured
    # its longest: a loaded run queue can delay a switch-in), so none is counted
    res = pytracekit("offcputime", "-f", "-m", "20000", "--", workload, "sleeptimed", "20", "5")
    assert res.returncode == 0, res.stderr
    slept, out = split_slept(res.stdout)
    if slept["longest_ns"] < 20_000_000:     # off CPU for no longer than its wall time
        assert "clock_nanosleep" not in out, res.stdout
    res = pytracekit("offcputime", "-f", "-M", "20000", "--", workload, "sleeptimed", "20", "5")
    slept, out = split_slept(res.stdout)
    line = next(l for l in out.splitlines() if ";main;sleeper;nanosleep;clock_nanosleep;" in l)
    assert line.startswith("workload;") and ";do_nanosleep;schedule;__schedule " in line
    # at most the wall time around the sleeps (without any over 20 ms, -M)
    assert 90_000 <= int(line.rsplit(" ", 1)[1]) <= slept["slept_ns"] / 1000, res.stdout


@pytest.mark.root
def test_user_stacks_only_and_state_filter(workload):
    # nanosleep sleeps interruptibly (state 1); with --state 2 nothing matches
    res = pytracekit("offcputime", "-U", "--state", "1", "--json", "--", workload,
                     "sleeptimed", "4", "25")
    slept, out = split_slept(res.stdout)
    _, stacks, _ = parse_json(out, "offcputime")
    assert not any(names(s, "kernel") for s in stacks)
    sleeper = [s for s in stacks if contains_run(names(s, "user"), SLEEPER)]
    assert 90_000 <= sum(s["value"] for s in sleeper) <= slept["slept_ns"] / 1000
    res = pytracekit("offcputime", "-U", "--state", "2", "--json", "--", workload,
                     "sleep", "4", "25")
    _, stacks, _ = parse_json(res.stdout, "offcputime")
    assert not any("clock_nanosleep" in names(s) for s in stacks)


def test_conflicting_options_are_usage_errors():
    for args, message in [(["-u", "-k"], "-u and -k exclude each other"),
                          (["-m", "100", "-M", "10"], "-M 10 is below -m 100"),
                          (["-t", "0"], "bad tid list '0'")]:
        res = pytracekit("offcputime", *args, "1")
        assert res.returncode == 2 and message in res.stderr, res.stderr

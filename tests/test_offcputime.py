"""offcputime: real sched_switch tracing of the sleeping workload."""
import pytest

from conftest import pytracekit, pytracekit_probes_left
from stack_checks import contains_run, names, parse_json

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
    res = pytracekit("offcputime", "--json", "--", workload, "sleep", "10", "50")
    assert res.returncode == 0, res.stderr
    header, stacks, loss = parse_json(res.stdout, "offcputime")
    assert header["unit"] == "microseconds" and header["value_type"] == "off_cpu"
    assert 450_000 <= _sleeper_us(stacks) <= 550_000, res.stdout
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_min_block_time_filters_and_folded_output(workload):
    # 20 sleeps of 5 ms: all of them are under -m 20000 us, so none is counted
    res = pytracekit("offcputime", "-f", "-m", "20000", "--", workload, "sleep", "20", "5")
    assert res.returncode == 0, res.stderr
    assert "clock_nanosleep" not in res.stdout
    res = pytracekit("offcputime", "-f", "-M", "20000", "--", workload, "sleep", "20", "5")
    line = next(l for l in res.stdout.splitlines() if ";main;sleeper;nanosleep;clock_nanosleep;" in l)
    assert line.startswith("workload;") and ";do_nanosleep;schedule;__schedule " in line
    assert 90_000 <= int(line.rsplit(" ", 1)[1]) <= 130_000


@pytest.mark.root
def test_user_stacks_only_and_state_filter(workload):
    # nanosleep sleeps interruptibly (state 1); with --state 2 nothing matches
    res = pytracekit("offcputime", "-U", "--state", "1", "--json", "--", workload,
                     "sleep", "4", "25")
    _, stacks, _ = parse_json(res.stdout, "offcputime")
    assert not any(names(s, "kernel") for s in stacks)
    sleeper = [s for s in stacks if contains_run(names(s, "user"), SLEEPER)]
    assert 90_000 <= sum(s["value"] for s in sleeper) <= 110_000
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

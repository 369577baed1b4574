"""funclatency on the ground-truth workload: busy_call's known duration lands
all N calls in the right log2 bucket; nested calls each timed; errors."""
import re

import pytest

from conftest import pytracekit, pytracekit_probes_left
from probe_helpers import REALTIME, one_error_line, traced_pid_run, validated_json_lines

pytestmark = pytest.mark.root
N = 10
US = 300          # busy_call busy-waits 300 us: bucket 256 -> 511 usecs


def histograms(out: str) -> dict[str, dict[tuple[int, int], int]]:
    """Section label ("" without -F) -> {(low, high): count} of non-empty buckets."""
    result: dict[str, dict] = {}
    label = ""
    for line in out.splitlines():
        m = re.match(r"Function = (\S+)", line)
        if m:
            label = m.group(1)
        m = re.match(r"\s*(\d+) -> (\d+)\s*: (\d+)", line)
        if m and int(m.group(3)):
            result.setdefault(label, {})[(int(m.group(1)), int(m.group(2)))] = int(m.group(3))
    return result


def own_timings(stderr: str) -> list[tuple[int, int]]:
    """timedbusy's lines: each call's (inner, outer) duration in ns by the
    workload's own clock. The probes' timing of a call lies between the two."""
    return [(int(a), int(b)) for a, b in re.findall(r"^busy_call (\d+) (\d+)$", stderr, re.M)]


def bucket(ns: int) -> tuple[int, int]:
    """The log2 microsecond bucket funclatency -u puts a call of `ns` in."""
    low = 1 << ((ns // 1000).bit_length() - 1)
    return low, 2 * low - 1


def fits(histogram: dict[tuple[int, int], int], timings: list[tuple[int, int]]) -> bool:
    """Every call counted once, each in a bucket its own timing allows: the
    bucket of its inner duration, of its outer one, or one between (they
    differ only when the call was preempted or a probe was slow right at a
    bucket boundary). Calls are handed to buckets lowest first, the call whose
    allowance ends soonest first (so a fit is found when one exists)."""
    allowed = sorted((bucket(inner)[0], bucket(outer)[0]) for inner, outer in timings)
    if sum(histogram.values()) != len(allowed):
        return False
    for low, _high in sorted(histogram):
        for _ in range(histogram[(low, _high)]):
            takers = [a for a in allowed if a[0] <= low <= a[1]]
            if not takers:
                return False
            allowed.remove(min(takers, key=lambda a: a[1]))
    return not allowed


def test_all_calls_in_the_right_microsecond_bucket(workload):
    """Each call lands in its own bucket: the workload times every call
    itself, so a call stretched by preemption on a loaded machine is expected
    where it really landed, and the histogram is still checked call for call."""
    res = pytracekit("funclatency", "-u", f"{workload}:busy_call", "--",
                     *REALTIME, workload, "timedbusy", str(N), str(US))
    assert res.returncode == 0, res.stderr
    timings = own_timings(res.stderr)
    assert len(timings) == N and all(US * 1000 <= inner <= outer for inner, outer in timings)
    found = histograms(res.stdout)
    assert list(found) == [""] and fits(found[""], timings), (found, timings)
    m = re.search(r"avg = (\d+) usecs, total: (\d+) usecs, count: (\d+)", res.stdout)
    assert m and int(m.group(3)) == N
    # each call's whole microseconds, summed: between the two own timings'
    assert sum(i // 1000 for i, _ in timings) <= int(m.group(2)) <= sum(o // 1000 for _, o in timings)
    assert int(m.group(1)) == int(m.group(2)) // N
    assert pytracekit_probes_left() == []


def test_own_timings_decide_the_buckets():
    """fits() itself: exact where the timings agree, either neighbour where
    a call's inner and outer durations straddle a boundary, never a miscount."""
    calm = [(300_000, 302_000)] * 3
    assert fits({(256, 511): 3}, calm)
    assert not fits({(256, 511): 2, (512, 1023): 1}, calm)
    assert not fits({(256, 511): 2}, calm)
    straddling = calm[:2] + [(510_500, 513_000)]
    assert fits({(256, 511): 3}, straddling) and fits({(256, 511): 2, (512, 1023): 1}, straddling)
    assert not fits({(256, 511): 1, (512, 1023): 2}, straddling)
    preempted = calm[:2] + [(700_000, 701_000)]
    assert fits({(256, 511): 2, (512, 1023): 1}, preempted)
    assert not fits({(256, 511): 3}, preempted)


def test_pid_and_milliseconds(workload, tmp_path):
    out, err, rc = traced_pid_run(["funclatency", "-m", f"{workload}:busy_call"], workload,
                                  ["busy", "4", "3000"], tmp_path, prefix=REALTIME)
    assert rc == 0, err
    assert histograms(out) == {"": {(2, 3): 4}}     # 3 ms each


def test_nested_calls_are_each_timed_per_function(workload):
    res = pytracekit("funclatency", "-F", f"{workload}:stack_*", "--", workload, "stacks", str(N))
    assert res.returncode == 0, res.stderr
    counts = {label: sum(b.values()) for label, b in histograms(res.stdout).items()}
    assert counts == {"stack_leaf": 3 * N, "stack_path_a": N, "stack_path_b": 2 * N}


def test_json_follows_the_schema(workload):
    res = pytracekit("funclatency", "--json", "-u", f"{workload}:busy_call", "--",
                     *REALTIME, workload, "timedbusy", "3", str(US))
    assert res.returncode == 0, res.stderr
    objs = validated_json_lines("funclatency", res.stdout)
    found = {(b["low"], b["high"]): b["count"] for b in objs[0]["buckets"]}
    assert fits(found, own_timings(res.stderr)), (objs[0], res.stderr)   # 256-511 unless preempted
    assert objs[0]["count"] == 3 and objs[-1]["type"] == "loss"


@pytest.mark.parametrize("args, status, words", [
    (["t:sched:sched_switch"], 2, "funclatency times whole functions"),
    (["-u", "-m", "c:malloc"], 2, "-u and -m are mutually exclusive"),
    (["vfs_read"], 1, "no kprobes"),
    (["c:zz_no_such_*"], 1, "no function in"),
    (["-p", "999999", "c:malloc"], 1, "no process with pid 999999"),
    (["c:malloc+"], 2, "bad probe spec"),
])
def test_errors_are_one_line(args, status, words):
    line = one_error_line(pytracekit("funclatency", *args), status)
    assert words in line

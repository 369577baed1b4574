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


def test_all_calls_in_the_right_microsecond_bucket(workload):
    res = pytracekit("funclatency", "-u", f"{workload}:busy_call", "--",
                     *REALTIME, workload, "busy", str(N), str(US))
    assert res.returncode == 0, res.stderr
    assert histograms(res.stdout) == {"": {(256, 511): N}}
    m = re.search(r"avg = (\d+) usecs, total: (\d+) usecs, count: (\d+)", res.stdout)
    assert m and int(m.group(3)) == N
    assert US <= int(m.group(1)) < 512
    assert pytracekit_probes_left() == []


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
                     *REALTIME, workload, "busy", "3", str(US))
    assert res.returncode == 0, res.stderr
    objs = validated_json_lines("funclatency", res.stdout)
    assert objs[0]["buckets"] == [{"low": 256, "high": 511, "count": 3}]
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

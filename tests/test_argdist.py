"""argdist: exact counts and buckets from real probes on the workload, errors."""
import re

import pytest

from conftest import pytracekit, pytracekit_probes_left
from probe_helpers import one_error_line, validated_json_lines


def count_rows(out: str, title: str) -> dict[str, int]:
    """The rows under the last block titled `title`: EVENT -> COUNT."""
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line == title)
    assert lines[start + 1].split() == ["COUNT", "EVENT"]
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("\t"):
            break
        count, event = line.strip().split(None, 1)
        rows[event] = int(count)
    return rows


def hist_buckets(out: str, title: str) -> dict[tuple[int, int], int]:
    lines = out.splitlines()
    start = max(i for i, line in enumerate(lines) if line == title)
    buckets = {}
    for line in lines[start + 2:]:
        m = re.match(r"\s*(\d+) -> (\d+)\s*: (\d+)", line)
        if not m:
            break
        buckets[(int(m.group(1)), int(m.group(2)))] = int(m.group(3))
    return buckets


@pytest.mark.root
def test_counts_malloc_sizes_exactly(workload):
    spec = "p:c:malloc(size_t size):size_t:size"
    res = pytracekit("argdist", "-c", "-i", "30", "-C", spec, "--", workload, "malloc", "9", "4242")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("[")
    assert count_rows(res.stdout, spec)["size = 4242"] == 9
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_count_with_two_expressions_a_filter_and_a_label(workload):
    spec = ("r:c:malloc(size_t size):u64,int:$entry(size),retval != 0:"
            "size > 4000 && size < 5000#big mallocs")
    res = pytracekit("argdist", "-i", "30", "-C", spec, "--", workload, "malloc", "4", "4545")
    assert res.returncode == 0, res.stderr
    assert count_rows(res.stdout, "big mallocs") == {"$entry(size) = 4545, retval != 0 = 1": 4}


@pytest.mark.root
def test_signed_division_and_remainder_truncate_toward_zero_as_in_c(workload):
    """BPF has unsigned division only (LLVM aborted on a signed one): i = 0..8,
    (i-5)/2 and (i-5)%3 as C computes them."""
    spec = f"p:{workload}:line_sink(int i):int,int:(i-5)/2,(i-5)%3#q r"
    res = pytracekit("argdist", "-i", "30", "-C", spec, "--", workload, "lineloop", "9")
    assert res.returncode == 0, res.stderr
    expected = {}
    for i in range(9):
        q, r = int((i - 5) / 2), (i - 5) - 3 * int((i - 5) / 3)
        key = f"(i-5)/2 = {q}, (i-5)%3 = {r}"
        expected[key] = expected.get(key, 0) + 1
    assert count_rows(res.stdout, "q r") == expected


@pytest.mark.root
def test_histogram_of_sizes_puts_all_in_one_bucket(workload):
    spec = "p:c:malloc(size_t size):size_t:size:size == 4242"
    res = pytracekit("argdist", "-i", "30", "-H", spec, "--", workload, "malloc", "6", "4242")
    assert res.returncode == 0, res.stderr
    buckets = {k: v for k, v in hist_buckets(res.stdout, spec).items() if v}
    assert buckets == {(4096, 8191): 6}


@pytest.mark.root
@pytest.mark.alone   # a wake-up delayed past 16.7 ms by other tests' CPU use leaves the bucket
def test_histogram_of_latency_puts_sleeps_in_their_bucket(workload):
    spec = f"r:{workload}:sleeper():u64:$latency"
    # 9 ms sits 0.6 ms above the bucket's floor (sleeps never end early) and
    # 7.7 ms below its top: room for wake-up delays on a loaded machine.
    res = pytracekit("argdist", "-i", "30", "-H", spec, "--", workload, "sleep", "3", "9")
    assert res.returncode == 0, res.stderr
    buckets = {k: v for k, v in hist_buckets(res.stdout, spec).items() if v}
    assert buckets == {(8388608, 16777215): 3}    # ns


@pytest.mark.root
def test_json_follows_the_schema(workload):
    res = pytracekit("argdist", "--json", "-i", "30",
                     "-C", "p:c:malloc(size_t size):size_t:size:size == 4242",
                     "-H", "p:c:malloc(size_t size):size_t:size:size == 4242#sizes",
                     "--", workload, "malloc", "3", "4242")
    assert res.returncode == 0, res.stderr
    objs = validated_json_lines("argdist", res.stdout)
    counts = [o for o in objs if o["type"] == "count"]
    assert [(o["values"], o["count"]) for o in counts] == [({"size": 4242}, 3)]
    hist = [o for o in objs if o["type"] == "histogram"][0]
    assert hist["probe"] == "sizes" and [b for b in hist["buckets"] if b["count"]] == [
        {"low": 4096, "high": 8191, "count": 3}]
    assert objs[-1]["type"] == "loss"


@pytest.mark.root
@pytest.mark.parametrize("args, message", [
    (["-C", "p:c:malloc(size_t size):size_t:size +"],
     "expression: unexpected end of expression at column 7: size +"),
    (["-C", "p:c:malloc(size_t size):size_t:size:size = 1"],
     "filter: assignment '=' is not allowed (use '==' to compare) at column 6: size = 1"),
    (["-C", "p:c:malloc(size_t size):size_t:size; exit(0)"],
     "expression: unexpected ';' (one expression, not statements) at column 5"),
    (["-C", "p:c:malloc(size_t size):size_t:sise"], "expression: unknown name 'sise'"),
    (["-C", "p:c:malloc(size_t size):size_t,int:size"], "2 type(s) but 1 expression(s)"),
    (["-H", "p:c:malloc(size_t size):char*:size"], "'size' is a number but its type is a string"),
    (["-H", "p:c:malloc(size_t size)"], "a histogram needs an expression"),
    (["-C", "p:c:malloc(size_t size):size_t:$latency"],
     "expression: $latency exists only on return probes (r:...) at column 1"),
    (["-C", "malloc"], "TYPE one of p r t u"),
])
def test_malformed_specs_are_one_line_and_exit_2(args, message):
    line = one_error_line(pytracekit("argdist", *args), 2)
    assert line.startswith("pytracekit argdist: error: ")
    assert message in line, line


@pytest.mark.root
def test_number_of_intervals_ends_the_run():
    res = pytracekit("argdist", "-i", "0.3", "-n", "2", "-C", "t:syscalls:sys_enter_getpid()")
    assert res.returncode == 0, res.stderr
    assert len(re.findall(r"^\[\d\d:\d\d:\d\d\]$", res.stdout, re.M)) == 2
    assert res.stdout.count("t:syscalls:sys_enter_getpid()") == 2


def _fake_probe(spec_text, kind="freq", default=False, scope_kind="entry", names=("size",)):
    from types import SimpleNamespace
    from pytracekit.tools.argdist import ArgdistProbe, split_spec
    fn = SimpleNamespace(scope=SimpleNamespace(kind=scope_kind))
    return ArgdistProbe(0, split_spec(spec_text, kind), None, fn, [], list(names), default)


def test_count_rows_are_laid_out_as_bcc_does_largest_last_and_top_n():
    from pytracekit.tools.argdist import _display_rows
    p = _fake_probe("p:c:malloc(size_t size):size_t:size")
    rows = [((16,), 5), ((4242,), 9), ((32,), 1)]
    assert _display_rows(p, rows, None) == ["\tCOUNT      EVENT", "\t1          size = 32",
                                            "\t5          size = 16", "\t9          size = 4242"]
    assert _display_rows(p, rows, 2)[1:] == ["\t5          size = 16", "\t9          size = 4242"]
    calls = _fake_probe("p:c:malloc()", default=True, names=("total calls",))
    assert _display_rows(calls, [((0,), 7)], None)[1] == "\t7          total calls"
    rets = _fake_probe("r:c:malloc()", default=True, scope_kind="return", names=("retval",))
    assert _display_rows(rets, [((0,), 2)], None)[1] == "\t2          retval = 0"


@pytest.mark.root
def test_pid_option_counts_only_that_process(workload, tmp_path):
    from probe_helpers import traced_pid_run
    spec = "p:c:malloc(size_t size):size_t:size"
    out, err, rc = traced_pid_run(["argdist", "-c", "-i", "30", "-C", spec], workload,
                                  ["malloc", "5", "4343"], tmp_path)
    assert rc == 0, err
    assert count_rows(out, spec) == {"size = 4343": 5}


@pytest.mark.root
def test_usdt_arguments_of_a_running_python(tmp_path):
    from usdt_helpers import PYTHON, traced_python_gc
    spec = f"u:{PYTHON}:gc__start():int:arg1"
    out, err, rc = traced_python_gc(["argdist", "-c", "-i", "30", "-C", spec], 7, tmp_path)
    assert rc == 0, err
    assert count_rows(out, spec) == {"arg1 = 2": 7}    # gc.collect() collects generation 2

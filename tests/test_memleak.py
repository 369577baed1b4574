"""memleak against `workload leak N SIZE`: exactly N blocks of SIZE bytes
outstanding, from main -> leak_path -> leak_alloc -> malloc."""
import os
import subprocess
import tempfile
import time

import pytest

from conftest import Tool, pytracekit, pytracekit_probes_left
from sched_helpers import json_lines, validate
from pytracekit.model import Frame
from pytracekit.tools.memleak import Outstanding, report_text

N, SIZE = 7, 3000
LEAK_STACK = ["leak_alloc", "leak_path", "main"]


def _leak_report(objs):
    """The stacks memleak reports whose leaf frames are the leak path."""
    return [o for o in objs if o["type"] == "outstanding"
            and [f["name"] for f in o["frames"][:3]] == LEAK_STACK]


@pytest.mark.root
def test_memleak_reports_exactly_the_leaked_blocks_of_a_command(workload):
    res = pytracekit("memleak", "--json", "-o", "0", "-a", "--", workload, "leak", str(N),
                     str(SIZE))
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("memleak", objs)
    (leak,) = _leak_report(objs)
    assert leak["allocations"] == N and leak["bytes"] == N * SIZE
    assert [a["size"] for a in leak["addresses"]] == [SIZE] * N
    assert objs[-1]["type"] == "loss" and objs[-1]["stack_errors"] == 0
    assert objs[-1]["map_full"] == 0
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_memleak_pid_text_output_like_bcc(workload):
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        proc = subprocess.Popen([workload, "--go-file", go, "leak", str(N), str(SIZE)])
        try:
            with Tool("memleak", "-o", "0", "--combined-only", "-p", str(proc.pid)) as tool:
                open(go, "w").close()
                time.sleep(0.2)             # the leaks are done; the workload sleeps 300 ms
                out, err = tool.stop()
        finally:
            proc.wait()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    i = lines.index(f"\t{N * SIZE} bytes in {N} allocations from stack")
    assert [l.strip().split("+")[0] for l in lines[i + 1:i + 4]] == LEAK_STACK
    assert lines[i + 1].endswith("[workload]")
    assert f"Attaching to pid {proc.pid}, Ctrl+C to quit." in err


@pytest.mark.root
def test_memleak_size_filter_drops_the_leak(workload):
    res = pytracekit("memleak", "--json", "-o", "0", "-Z", str(SIZE - 1), "--", workload,
                     "leak", str(N), str(SIZE))
    assert res.returncode == 0, res.stderr
    assert _leak_report(json_lines(res.stdout)) == []


@pytest.mark.root
def test_memleak_kernel_mode_reports_kernel_stacks():
    res = pytracekit("memleak", "--json", "-o", "0", "-T", "3", "-d", "0.5")
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("memleak", objs)
    stacks = [o for o in objs if o["type"] == "outstanding"]
    assert stacks and all(f["kind"] == "kernel" for o in stacks for f in o["frames"])
    # each of the top stacks stored (by hash, ptk_kstack.h) and named
    assert all(o["frames"] for o in stacks), stacks


def test_memleak_usage_errors():
    res = pytracekit("memleak", "-z", "10", "-Z", "5", "-p", "1")
    assert res.returncode == 2 and "-z 10 is larger than -Z 5" in res.stderr
    res = pytracekit("memleak", "-p", "999999999")
    assert res.returncode == 1
    assert res.stderr.strip() == "pytracekit memleak: error: no process with pid 999999999"


def test_report_text_lists_largest_last():
    stacks = [Outstanding(1, 10, 1, [Frame("a")]), Outstanding(2, 30, 3, [Frame("b")])]
    lines = report_text(stacks, 10, False).splitlines()
    assert lines[0].endswith("Top 2 stacks with outstanding allocations:")
    assert lines[1:] == ["\t10 bytes in 1 allocations from stack", "\t\ta",
                         "\t30 bytes in 3 allocations from stack", "\t\tb"]


@pytest.mark.root
def test_memleak_interval_reports_while_the_command_runs(workload):
    res = pytracekit("memleak", "--json", "-o", "0", "0.1", "--", workload, "leak", str(N),
                     str(SIZE))
    assert res.returncode == 0, res.stderr
    reports = _leak_report(json_lines(res.stdout))
    # the workload lives 300 ms after leaking: interval reports, then the final one
    assert len(reports) >= 2
    assert all(r["allocations"] == N and r["bytes"] == N * SIZE for r in reports)


def test_a_frame_pointer_fallback_stack_is_rooted_in_its_marker_in_text_and_json():
    # a process the unwinder had not loaded yet: its stack is the kernel's
    # frame-pointer walk (counted as unwind_fallback), shown as such
    from stack_checks import fallback_symbolizer
    from pytracekit.tools.memleak import Memleak, report_json
    tool = Memleak(prog=None, symbolizer=fallback_symbolizer(7, [0x1000, 0x2000]),
                   pid=os.getpid())
    entry = Outstanding(-1, 64, 2, tool._frames(-1, 7), stack_hash=7)
    objs = report_json([entry], 10, False)
    assert [f["kind"] for f in objs[0]["frames"]] == ["user", "user", "marker"]
    assert objs[0]["frames"][-1]["name"] == "[frame pointers: process not loaded yet]"
    validate("memleak", objs)
    assert report_text([entry], 10, False).splitlines()[-1] == \
        "\t\t[frame pointers: process not loaded yet]"

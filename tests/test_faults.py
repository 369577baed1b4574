"""faults against `workload touch N`: N fresh pages (THP off) written once
each in touch_pages() are exactly N faults with touch_pages as the leaf."""
import time

import pytest

from conftest import Tool, pytracekit
from whohelpers import GatedWorkload
from sched_helpers import json_lines, validate
from pytracekit.model import Frame, Sample, StackProfile
from pytracekit.tools.faults import folded, stackcount_text

N = 64


@pytest.mark.root
def test_faults_counts_each_touched_page_on_its_stack(workload):
    res = pytracekit("faults", "-U", "--json", "--", workload, "touch", str(N))
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("faults", objs)
    touching = [o for o in objs if o["type"] == "stack" and o["frames"]
                and o["frames"][-1]["name"] == "touch_pages"]
    assert sum(o["value"] for o in touching) == N
    names = [f["name"] for f in touching[0]["frames"]]
    assert names[0] == "workload" and names[-2:] == ["main", "touch_pages"]


@pytest.mark.root
def test_faults_folded_has_the_touch_stack(workload):
    res = pytracekit("faults", "--folded", "--", workload, "touch", "8")
    assert res.returncode == 0, res.stderr
    lines = [l for l in res.stdout.splitlines() if ";main;touch_pages" in l]
    assert lines and sum(int(l.rsplit(" ", 1)[1]) for l in lines) == 8


def test_faults_rejects_both_stack_filters():
    res = pytracekit("faults", "-U", "-K")
    assert res.returncode == 2 and "only one of -U and -K" in res.stderr


def test_text_and_folded_renderers():
    stack = (Frame("w", "process"), Frame("main"), Frame("leaf"))
    profile = StackProfile([Sample(stack, 3, pid=7, comm="w"), Sample(stack, 2, pid=7, comm="w")])
    assert folded(profile) == "w;main;leaf 5"
    assert stackcount_text(StackProfile([Sample(stack, 3, pid=7, comm="w")])).splitlines() == [
        "  leaf", "  main", "    w [7]", "    3"]


@pytest.mark.root
def test_faults_interval_reports_each_fault_once(workload, tmp_path):
    """-i clears after each report: the N faults appear once in all the reports
    together, though two more intervals pass after them."""
    with GatedWorkload(workload, tmp_path, "touch", str(N)) as w:
        with Tool("faults", "-U", "--folded", "-i", "0.1", "-p", str(w.pid)) as tool:
            w.release()
            time.sleep(0.35)
            out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = [l for l in out.splitlines() if ";main;touch_pages" in l]
    assert sum(int(l.rsplit(" ", 1)[1]) for l in lines) == N, out


@pytest.mark.parametrize("tool", ["faults", "kmem", "schedlat", "klockstat", "mutexstat"])
def test_a_number_is_not_taken_for_a_command_nor_dropped(tool):
    res = pytracekit(tool, "5")
    assert res.returncode == 2
    assert res.stderr.splitlines() == [
        f"pytracekit {tool}: error: {tool} takes no [interval] [count] numbers: give -d SECONDS "
        "to stop after a while, and a command after --"]


@pytest.mark.root
@pytest.mark.parametrize("linger_ms", ["0", "300"])
def test_stacks_are_named_after_the_command_exited(workload, linger_ms):
    """The command touches N pages and exits at once (0) or lingers: its
    frames are stored by build id, so touch_pages is named either way."""
    res = pytracekit("faults", "-U", "--folded", "--", workload, "touch", str(N), linger_ms)
    assert res.returncode == 0, res.stderr
    counts = {}
    for line in res.stdout.splitlines():
        stack, value = line.rsplit(" ", 1)
        counts[stack] = counts.get(stack, 0) + int(value)
    touching = {s: v for s, v in counts.items() if s.endswith(";main;touch_pages")}
    assert list(touching.values()) == [N], counts
    assert list(touching)[0].startswith("workload;")

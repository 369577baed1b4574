"""faults against `workload touch N`: N fresh pages (THP off) written once
each in touch_pages() are exactly N faults with touch_pages as the leaf."""
import pytest

from conftest import pytracekit
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

"""diff: what changed between two real recordings."""
import json

import schema_check
import pytest

from pytracekit import recording, reporting
from pytracekit.model import Frame, Sample, StackProfile

from conftest import pytracekit
from stack_checks import SCHEMAS


def test_diff_functions_compares_shares():
    def prof(pairs):
        return StackProfile([Sample((Frame("main"), Frame(n)), v) for n, v in pairs])
    changes = {c.name: c for c in reporting.diff_functions(prof([("a", 3), ("b", 1)]),
                                                          prof([("a", 10), ("b", 10)]))}
    assert changes["a"].before_self == 75.0 and changes["a"].after_self == 50.0
    assert changes["b"].self_delta == 25.0
    assert changes["main"].total_delta == 0.0


@pytest.mark.root
def test_diff_of_spin_and_busy_recordings(workload, tmp_path):
    a, b = tmp_path / "spin.ptk", tmp_path / "busy.ptk"
    assert pytracekit("record", "-o", str(a), "-F", "199", "--", workload, "spin",
                      "0.5").returncode == 0
    assert pytracekit("record", "-o", str(b), "-F", "199", "--", workload, "busy", "200",
                      "2000").returncode == 0
    html = tmp_path / "diff.html"
    res = pytracekit("diff", str(a), str(b), "--json", "--output", str(html))
    assert res.returncode == 0, res.stderr
    schema = json.loads((SCHEMAS / "diff.schema.json").read_text())
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    for obj in objs:
        schema_check.validate(obj, schema)
    changes = {o["function"]: o for o in objs}
    assert changes["spin_inner"]["before_total"] >= 90 and changes["spin_inner"]["after_total"] == 0
    assert changes["busy_call"]["before_total"] == 0 and changes["busy_call"]["after_total"] >= 90
    from pytracekit.render.flamegraph import page_data
    drawn = page_data(html.read_text())["names"]   # the graph has AFTER's shape
    assert "busy_call" in drawn and "spin_outer" not in drawn
    text = pytracekit("diff", str(a), str(b)).stdout
    row = next(l for l in text.splitlines() if l.endswith(" spin_inner")).split()
    assert row[1] == "0.00%" and row[2].startswith("-")     # self after, its delta


def test_diff_refuses_mixed_units(tmp_path):
    a, b = tmp_path / "a.ptk", tmp_path / "b.ptk"
    recording.save(StackProfile([Sample((Frame("x"),), 1)]), str(a))
    recording.save(StackProfile([Sample((Frame("x"),), 1)], unit="microseconds"), str(b))
    res = pytracekit("diff", str(a), str(b))
    assert res.returncode == 2 and "cannot compare count" in res.stderr

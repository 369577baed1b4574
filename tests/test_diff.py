"""diff: what changed between two real recordings."""
import json

import schema_check
import pytest

from pytracekit.collect import recording
from pytracekit.render import reporting
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


def _timed(stacks, seconds):
    return StackProfile([Sample(tuple(Frame(n) for n in path.split(";")), v)
                         for path, v in stacks], duration_ns=seconds * 1_000_000_000)


def test_diff_ranks_by_change_in_total_share_with_rates_beside():
    """A caller that went from 50% to 70% (through its callee) ranks above a
    self change of -0.28 points; samples per second stand beside the shares."""
    before = _timed([("main;grow;work", 5000), ("main;other", 4972),
                     ("main;__schedule", 28)], 10)
    after = _timed([("main;grow;work", 14000), ("main;other", 6000)], 20)
    changes = reporting.diff_functions(before, after)
    order = [c.name for c in changes]
    assert order == ["work", "grow", "other", "__schedule", "main"]
    grow = changes[1]
    assert (grow.before_total, grow.after_total, grow.self_delta) == (50.0, 70.0, 0.0)
    assert (grow.before_total_rate, grow.after_total_rate) == (500.0, 700.0)
    assert (grow.before_self_rate, grow.after_self_rate) == (0.0, 0.0)
    text = reporting.diff_text(changes).splitlines()
    assert text[0].split() == ["#", "Total", "before", "Total", "after", "Delta", "Before/s",
                               "After/s", "Self", "before", "Self", "after", "Delta",
                               "Function"]
    assert text[3].split() == ["50.00%", "70.00%", "+20.00%", "500.0", "700.0",
                               "0.00%", "0.00%", "+0.00%", "grow"]
    assert text[5].split() == ["0.28%", "0.00%", "-0.28%", "2.8", "0.0",
                               "0.28%", "0.00%", "-0.28%", "__schedule"]
    assert text[-1].split()[-1] == "__schedule"     # main did not change: left out
    unknown = reporting.diff_functions(_timed([("a", 1)], 0), _timed([("a", 1)], 0))
    assert unknown[0].before_total_rate is None
    assert reporting.diff_text(unknown, min_delta=0).splitlines()[2].split()[3:5] == ["-", "-"]


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
    assert row[1] == "0.00%" and row[2].startswith("-")     # total after, its delta
    assert float(row[3]) > 0 and row[4] == "0.0"            # spin_inner's samples/s
    # the largest change first: +-100 points (busy_call, or what it calls all the time:
    # its clock reads, as often in every sample as it is, tie with it)
    assert abs(objs[0]["after_total"] - objs[0]["before_total"]) >= 90, objs[0]
    assert all(abs(a["after_total"] - a["before_total"]) >= abs(b["after_total"] -
               b["before_total"]) for a, b in zip(objs, objs[1:]))


def test_diff_refuses_mixed_units(tmp_path):
    a, b = tmp_path / "a.ptk", tmp_path / "b.ptk"
    recording.save(StackProfile([Sample((Frame("x"),), 1)]), str(a))
    recording.save(StackProfile([Sample((Frame("x"),), 1)], unit="microseconds"), str(b))
    res = pytracekit("diff", str(a), str(b))
    assert res.returncode == 2 and "cannot compare count" in res.stderr

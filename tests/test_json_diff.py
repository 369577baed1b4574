"""diff --json follows pytracekit/schemas/diff.schema.json."""
from pytracekit import recording
from pytracekit.model import Frame, Sample, StackProfile

from conftest import pytracekit
from schema_check import validate_lines


def _recording(path, pairs):
    recording.save(StackProfile([Sample(tuple(Frame(n) for n in names), v)
                                 for names, v in pairs]), str(path))


def test_diff_json_follows_the_schema(tmp_path):
    a, b = tmp_path / "a.ptk", tmp_path / "b.ptk"
    _recording(a, [(("main", "slow"), 75), (("main", "fast"), 25)])
    _recording(b, [(("main", "slow"), 25), (("main", "fast"), 75)])
    res = pytracekit("diff", str(a), str(b), "--json")
    assert res.returncode == 0, res.stderr
    changes = {o["function"]: o for o in validate_lines(res.stdout, "diff")}
    assert changes["slow"]["before_self"] == 75 and changes["slow"]["after_self"] == 25
    assert changes["fast"]["after_total"] == 75

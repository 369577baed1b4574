"""report: top functions, caller tree and conversions of real recordings."""
import pytest

from pytracekit.collect import recording
from pytracekit.render import reporting
from pytracekit.model import Frame, Sample, StackProfile

from conftest import pytracekit


def _synthetic():
    def s(names, value):
        return Sample((Frame("app", "process"),) + tuple(Frame(n) for n in names), value)
    return StackProfile([s(["main", "a", "b"], 6), s(["main", "a"], 2), s(["main", "c"], 2),
                         s(["main", "c", "a"], 0)])


def test_function_table_self_and_total():
    rows = {r.name: (r.self_value, r.total_value) for r in reporting.function_table(_synthetic())}
    assert rows == {"b": (6, 6), "a": (2, 8), "c": (2, 2), "main": (0, 10)}
    assert reporting.function_table(_synthetic())[0].name == "b"


def test_caller_tree_text():
    text = reporting.caller_tree_text(_synthetic(), min_percent=15)
    assert text.splitlines() == [" 100.00%  app", " 100.00%    main", "  80.00%      a",
                                 "  60.00%        b", "  20.00%      c",
                                 "  (1 branches under 15% not shown)"]


@pytest.fixture(scope="module")
def spin_recording(workload, tmp_path_factory):
    path = tmp_path_factory.mktemp("rec") / "spin.ptk"
    res = pytracekit("record", "-o", str(path), "-F", "199", "--", workload, "spin", "0.8")
    assert res.returncode == 0, res.stderr
    return path


@pytest.mark.root
def test_report_puts_spin_inner_on_top(spin_recording):
    res = pytracekit("report", str(spin_recording))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    first_row = lines[lines.index(next(l for l in lines if l.startswith("# ---"))) + 1]
    assert first_row.split()[-1] == "spin_inner"
    assert float(first_row.split()[1].rstrip("%")) >= 85     # self share
    assert "spin_outer" in res.stdout and "# Caller tree" in res.stdout


@pytest.mark.root
def test_report_converts_to_folded_and_pprof(spin_recording, tmp_path):
    from pytracekit.render.folded import parse_folded
    from pytracekit.render.pprof import from_pprof
    prof = recording.load(str(spin_recording))
    res = pytracekit("report", str(spin_recording), "--format", "folded")
    assert parse_folded(res.stdout).total == prof.total
    out = tmp_path / "spin.pb.gz"
    res = pytracekit("report", str(spin_recording), "--output", str(out))
    assert res.returncode == 0, res.stderr
    assert from_pprof(out.read_bytes()).total == prof.total
    html = tmp_path / "spin.html"
    pytracekit("report", str(spin_recording), "--output", str(html))
    assert "spin_inner" in html.read_text()


def test_report_of_a_missing_file_is_one_line():
    res = pytracekit("report", "/no/such.ptk")
    assert res.returncode == 1
    assert res.stderr.strip() == ("pytracekit report: error: no recording /no/such.ptk "
                                  "(make one with `pytracekit record -o /no/such.ptk`)")

"""BCC-style text renderers, parsed back."""
import re

from pytracekit.model import Counts, Histogram, LinearHistogram, LossReport
from pytracekit.render.text import counts_table, linear_histogram, log2_histogram, loss_line

ROW = re.compile(r"^\s*(\d+) -> (\d+)\s+: (\d+)\s+\|(\**)\s*\|$")


def test_log2_histogram_rows_parse_back_to_the_counts_and_align_with_the_header():
    hist = Histogram(unit="usecs")
    for value in [0, 1, 3, 300, 300, 700]:
        hist.add(value)
    lines = log2_histogram(hist).splitlines()
    assert lines[0].index(":") == lines[1].index(":")
    rows = [tuple(map(int, ROW.match(l).groups()[:3])) for l in lines[1:]]
    assert rows[0] == (0, 1, 2)          # BCC's first row holds 0 and 1
    assert (256, 511, 2) in rows and (512, 1023, 1) in rows
    assert sum(r[2] for r in rows) == hist.total


def test_log2_histogram_bars_are_proportional():
    hist = Histogram(buckets={3: 10, 4: 5}, unit="bytes")
    bars = {int(ROW.match(l).group(1)): len(ROW.match(l).group(4))
            for l in log2_histogram(hist).splitlines()[1:]}
    assert bars[4] == 40 and bars[8] == 20


def test_linear_histogram_and_counts_table_and_loss_line():
    lin = LinearHistogram(buckets={0: 1, 2: 3}, step=5, unit="len")
    lines = linear_histogram(lin).splitlines()
    assert [l.split(":")[0].strip() for l in lines[1:]] == ["0", "5", "10"]
    table = counts_table(Counts(("PID", "COMM"), {(1, "a"): 5, (2, "b"): 9})).splitlines()
    assert table[0].split() == ["PID", "COMM", "COUNT"]
    assert table[1].split() == ["2", "b", "9"]
    assert loss_line(LossReport()) == ""
    assert "3 events lost" in loss_line(LossReport(lost_events=3))


def test_loss_line_names_user_stacks_not_wholly_unwound_by_cfi():
    loss = LossReport(unwind_fallback=4, unwind_fp_steps=2, unwind_incomplete=1)
    assert loss_line(loss) == (
        "WARNING: 4 user stacks by frame pointers (process not loaded yet); 2 user stacks "
        "with frame-pointer steps in code that has CFI; 1 user stacks incomplete "
        "(unwinding stopped early)")
    assert (loss + loss).as_dict()["unwind_fp_steps"] == 4

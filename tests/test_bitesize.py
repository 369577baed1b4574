"""bitesize against direct I/O of known sizes from a uniquely named dd."""
import pytest

from block_fixture import loop_disk  # noqa: F401 (fixture)
from conftest import Tool
from snoop_helpers import validated_json


@pytest.mark.root
def test_sizes_per_process_name(loop_disk):
    with Tool("bitesize", "-d", loop_disk.name) as tool:
        loop_disk.write(9, size=64 * 1024)
        loop_disk.write(5, size=4 * 1024, seek=1000)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    section = out.split(f"Process Name = {loop_disk.comm}\n", 1)[1].split("\n\n")[0]
    counts = {line.split(":")[0].strip(): int(line.split(":")[1].split()[0])
              for line in section.splitlines() if "->" in line}
    assert counts["64 -> 127"] == 9 and counts["4 -> 7"] == 5
    assert sum(counts.values()) == 14


@pytest.mark.root
def test_json_histogram_per_process(loop_disk):
    with Tool("bitesize", "--json", "-d", loop_disk.name) as tool:
        loop_disk.write(3, size=16 * 1024)
        out, err = tool.stop()
    objects = validated_json("bitesize", out)
    mine = [o for o in objects if o["type"] == "histogram" and o["label"] == loop_disk.comm]
    assert len(mine) == 1 and mine[0]["unit"] == "Kbytes"
    assert mine[0]["buckets"][-1] == {"low": 16, "high": 31, "count": 3}


def test_count_without_interval_is_a_usage_error():
    from conftest import pytracekit
    from snoop_helpers import one_line_error
    res = pytracekit("bitesize", "--count", "3")
    assert res.returncode == 2
    assert "a count needs an interval" in one_line_error(res.stderr, "bitesize")

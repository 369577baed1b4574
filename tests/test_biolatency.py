"""biolatency against direct I/O to a private loop device: exact request counts."""
import pytest

from block_fixture import loop_disk  # noqa: F401 (fixture)
from conftest import Tool, pytracekit
from snoop_helpers import one_line_error, validated_json

K = 12


def _histogram_total(text: str) -> int:
    return sum(int(line.split(":")[1].split()[0]) for line in text.splitlines()
               if "->" in line)


@pytest.mark.root
def test_per_disk_histogram_counts_every_request(loop_disk):
    with Tool("biolatency", "-D", "-d", loop_disk.name) as tool:
        loop_disk.write(K)
        loop_disk.read(K)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    assert f"disk = {loop_disk.name}" in out
    assert "usecs" in out.splitlines()[2]
    assert _histogram_total(out) == 2 * K


@pytest.mark.root
def test_flags_split_reads_from_writes_in_json(loop_disk):
    with Tool("biolatency", "-F", "-m", "--json", "-d", loop_disk.name) as tool:
        loop_disk.write(K)
        loop_disk.read(K - 2)
        out, err = tool.stop()
    objects = validated_json("biolatency", out)
    hists = [o for o in objects if o["type"] == "histogram"]
    assert {h["unit"] for h in hists} == {"msecs"}
    assert sum(h["total"] for h in hists if "W" in h["label"]) == K
    assert sum(h["total"] for h in hists if "R" in h["label"]) == K - 2
    assert objects[-1]["type"] == "loss" and objects[-1]["map_full"] == 0


@pytest.mark.root
def test_interval_and_count_end_the_run(loop_disk):
    res = pytracekit("biolatency", "-T", "-Q", "-d", loop_disk.name, "0.3", "2")
    assert res.returncode == 0, res.stderr
    stamps = [line for line in res.stdout.splitlines() if line.count(":") == 2]
    assert len(stamps) == 2          # two intervals, then it stops by itself


@pytest.mark.root
def test_unknown_disk_is_one_line():
    res = pytracekit("biolatency", "-d", "nosuchdisk", "--duration", "0.1")
    assert res.returncode == 1
    assert "no block device 'nosuchdisk'" in one_line_error(res.stderr, "biolatency")


def test_per_disk_and_per_flags_together_is_a_usage_error():
    res = pytracekit("biolatency", "-D", "-F", "--duration", "0.1")
    assert res.returncode == 2
    assert "cannot be combined" in one_line_error(res.stderr, "biolatency")

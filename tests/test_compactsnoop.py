"""compactsnoop against a write to /proc/sys/vm/compact_memory, which
compacts every populated zone once, synchronously, in the writing process:
one event per zone, named from /proc/zoneinfo, as perf counts
compaction:mm_compaction_begin for the same command."""
import re
from pathlib import Path

import pytest

from conftest import pytracekit
from pytracekit.tools.compactsnoop import zones
from snoop_helpers import perf_stat, summary, validated_json

COMMAND = ["sh", "-c", "echo 1 > /proc/sys/vm/compact_memory"]


def populated() -> list[str]:
    """Zones with present pages, in /proc/zoneinfo's order."""
    text = Path("/proc/zoneinfo").read_text()
    return [m[1] for m in re.finditer(r"^Node \d+, zone\s+(\S+)\n(?:.*\n)*?\s+present\s+(\d+)",
                                      text, re.M) if int(m[2]) > 0]


@pytest.mark.root
def test_each_zone_compacted_once():
    res = pytracekit("compactsnoop", "-T", "--", *COMMAND)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "COMM", "PID", "NODE", "ZONE", "ORDER", "MODE",
                                "LAT(ms)", "STATUS"]
    rows = [line.split() for line in lines[1:]]
    assert [r[4] for r in rows] == populated()
    assert {(r[1], r[3], r[5], r[6], r[8]) for r in rows} == {("sh", "0", "-1", "sync",
                                                               "complete")}
    assert summary(res.stderr)["captured"] == len(rows)
    begin = "compaction:mm_compaction_begin"
    assert perf_stat([begin], COMMAND)[begin] == len(rows)


@pytest.mark.root
def test_json():
    res = pytracekit("compactsnoop", "--json", "--", *COMMAND)
    objects = validated_json("compactsnoop", res.stdout)
    events = [o for o in objects if o["type"] == "event"]
    starts = {name: pfn for pfn, (_node, name) in zones(Path("/proc/zoneinfo").read_text())
              .items()}
    assert [(e["zone"], e["zone_start_pfn"]) for e in events] == \
        [(z, starts[z]) for z in populated()]
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == len(events)


def test_zoneinfo_names_zones_by_their_first_page():
    text = ("Node 0, zone      DMA\n  pages free     3\n        present  3998\n"
            "  start_pfn:           1\nNode 0, zone  Movable\n  pages free     0\n"
            "Node 1, zone   Normal\n  start_pfn:           1048576\n")
    assert zones(text) == {1: (0, "DMA"), 1048576: (1, "Normal")}

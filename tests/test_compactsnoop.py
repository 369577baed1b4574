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
    assert {(r[1], r[3], r[5], r[6]) for r in rows} == {("sh", "0", "-1", "sync")}
    # a busy machine (another task wanting the CPU or the zone's lock) ends a
    # zone's compaction early: the kernel then says contended
    assert {r[8] for r in rows} <= {"complete", "contended"}, rows
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


PERF_EVENTS = ["compaction:mm_compaction_begin", "compaction:mm_compaction_isolate_migratepages",
               "compaction:mm_compaction_isolate_freepages",
               "compaction:mm_compaction_migratepages"]


def perf_pages(script: str, pid: int) -> list[dict]:
    """perf script's compaction events of `pid`, summed per compaction (each
    begins with mm_compaction_begin) as -e sums them."""
    out: list[dict] = []
    for line in script.splitlines():
        fields = line.split()
        if not fields or int(fields[0]) != pid:
            continue
        values = dict(re.findall(r"(\w+)=(\d+)", line))
        if "mm_compaction_begin:" in line:
            out.append(dict.fromkeys(("migrate_scanned", "migrate_taken", "free_scanned",
                                      "free_taken", "migrated", "failed"), 0))
        elif "isolate_migratepages:" in line:
            out[-1]["migrate_scanned"] += int(values["nr_scanned"])
            out[-1]["migrate_taken"] += int(values["nr_taken"])
        elif "isolate_freepages:" in line:
            out[-1]["free_scanned"] += int(values["nr_scanned"])
            out[-1]["free_taken"] += int(values["nr_taken"])
        elif "mm_compaction_migratepages:" in line:
            out[-1]["migrated"] += int(values["nr_migrated"])
            out[-1]["failed"] += int(values["nr_failed"])
    return out


@pytest.mark.root
def test_extended_pages_and_kernel_stack_as_perf_records_them(tmp_path):
    """-e: per compaction, the pages its tracepoints report, summed; perf
    records the same tracepoints of the same compactions meanwhile."""
    import subprocess
    from conftest import Tool
    data = tmp_path / "perf.data"
    with Tool("compactsnoop", "-e", "-K", "--json") as tool:
        run = subprocess.run(["perf", "record", "-q", "-o", str(data),
                              "-e", ",".join(PERF_EVENTS), "--", *COMMAND],
                             capture_output=True, text=True, timeout=120)
        out, _err = tool.stop()
    assert run.returncode == 0, run.stderr
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "pid,event,trace"],
                            capture_output=True, text=True, timeout=120).stdout
    sh_pid = int(script.split()[0])
    events = [o for o in validated_json("compactsnoop", out)
              if o["type"] == "event" and o["pid"] == sh_pid]
    assert [e["zone"] for e in events] == populated()
    assert [e["pages"] for e in events] == perf_pages(script, sh_pid)
    assert sum(e["pages"]["migrate_scanned"] for e in events) > 0
    # compact_memory's write: the sysctl handler compacting each zone
    assert [e["kernel_stack"] for e in events] == [
        ["__compact_zone", "compact_node", "sysctl_compaction_handler", "proc_sys_call_handler",
         "vfs_write", "ksys_write", "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
    ] * len(events)

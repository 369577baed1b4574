"""drsnoop against dd writing 64 MiB in a memory cgroup limited to 16 MiB
(never the host's memory): the cgroup must reclaim at least the 48 MiB over
its limit, and every reclaim is one event, as perf counts them in the same run."""
import os
import sys

import pytest

from conftest import ROOT
from memcg_helpers import memory_cgroup
from snoop_helpers import perf_stat, summary, validated_json

LIMIT, WRITTEN = 16 << 20, 64 << 20
BEGIN = "vmscan:mm_vmscan_memcg_reclaim_begin"


def _dd(path) -> list[str]:
    return ["dd", "if=/dev/zero", f"of={path}", "bs=1M", f"count={WRITTEN >> 20}",
            "status=none"]


@pytest.mark.root
def test_each_reclaim_once_with_its_pages(tmp_path):
    out = tmp_path / "out.json"
    with memory_cgroup(LIMIT) as inside:
        # perf counts the tool and its command: only the command reclaims
        perf = perf_stat([BEGIN], ["sh", "-c", f'cd {ROOT} && exec "$@" > {out}', "sh",
                                   sys.executable, "-m", "pytracekit", "drsnoop", "--json",
                                   "--", *inside, *_dd(tmp_path / "file")])
    objects = validated_json("drsnoop", out.read_text())
    events = [o for o in objects if o["type"] == "event"]
    assert len(events) == perf[BEGIN] > 0
    assert {(e["comm"], e["kind"], e["uid"]) for e in events} == {("dd", "memcg", 0)}
    # usage never passes the limit: all but the limit (less per-CPU charge
    # batches of 64 pages) was freed by these reclaims
    assert sum(e["pages"] for e in events) >= (WRITTEN - LIMIT) // 4096 - 64 * os.cpu_count()
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == len(events)


@pytest.mark.root
def test_text_columns_and_filters(tmp_path):
    from conftest import pytracekit
    with memory_cgroup(LIMIT) as inside:
        res = pytracekit("drsnoop", "-T", "-U", "--", *inside, *_dd(tmp_path / "a"))
        other = pytracekit("drsnoop", "-u", "65534", "--", *inside, *_dd(tmp_path / "b"))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "UID", "COMM", "PID", "LAT(ms)", "PAGES", "TYPE"]
    rows = [line.split() for line in lines[1:]]
    assert rows and {(r[1], r[2], r[6]) for r in rows} == {("0", "dd", "memcg")}
    assert len({r[3] for r in rows}) == 1
    assert summary(res.stderr)["captured"] == len(rows)
    assert other.stdout.splitlines()[1:] == [] and summary(other.stderr)["captured"] == 0

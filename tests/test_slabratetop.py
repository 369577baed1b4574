"""slabratetop against the workload opening a file N times: each open takes
one struct file (cache "filp") and one path name buffer ("names_cache"),
counted as perf counts kmem:kmem_cache_alloc for those caches in the same
command."""
import re

import pytest

from conftest import pytracekit
from snoop_helpers import perf_stat, validated_json

OPENS = 40
# kmalloc's slab sizes (a larger allocation gets whole pages)
KMALLOC_SIZES = {8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192}


def _totals(objects: list[dict]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in objects:
        if o["type"] == "cache":
            out[o["cache"]] = out.get(o["cache"], 0) + o["allocs"]
    return out


@pytest.mark.root
def test_allocations_per_cache_as_perf_counts_them(workload, tmp_path):
    command = [workload, "open", str(tmp_path / "marker"), str(OPENS)]
    res = pytracekit("slabratetop", "--json", "-r", "1000", "--", *command)
    assert res.returncode == 0, res.stderr
    totals = _totals(validated_json("slabratetop", res.stdout))
    for cache in ("filp", "names_cache"):
        perf = perf_stat(["kmem:kmem_cache_alloc"], command, filter_=f'name == "{cache}"')
        assert totals[cache] == perf["kmem:kmem_cache_alloc"] >= OPENS, cache


@pytest.mark.root
def test_text_table_and_kmalloc_sizes(workload):
    res = pytracekit("slabratetop", "-C", "-r", "1000", "--", workload, "exec", "3")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert re.match(r"^\d\d:\d\d:\d\d loadavg: ", lines[0]) and lines[1] == ""
    assert lines[2].split() == ["CACHE", "ALLOCS", "BYTES"]
    rows = [line.split() for line in lines[3:] if line]
    sizes = [int(r[0].split("-")[1]) for r in rows if r[0].startswith("kmalloc-")]
    assert sizes, rows      # execs kmalloc
    assert all(s in KMALLOC_SIZES or s % 4096 == 0 for s in sizes), sizes
    for name, allocs, size in rows:
        if name.startswith("kmalloc-"):
            assert int(size) == int(allocs) * int(name.split("-")[1])
    by_bytes = [int(r[2]) for r in rows]
    assert by_bytes == sorted(by_bytes, reverse=True)

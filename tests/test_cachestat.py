"""cachestat against a script that writes a file of N pages, syncs it, drops it
from the page cache (POSIX_FADV_DONTNEED) and reads it back: 2N pages added
(N by the writes, N by the read) and N folios dirtied, as perf stat counts
the same tracepoints over the same command."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import pytracekit
from snoop_helpers import perf_stat, validated_json

PAGES = 64
SCRIPT = f"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
for _ in range({PAGES}):
    os.write(fd, b"x" * 4096)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.lseek(fd, 0, 0)
while os.read(fd, 1 << 16):
    pass
os.close(fd)
"""
METADATA = 8
ADD, DIRTY = "filemap:mm_filemap_add_to_page_cache", "writeback:writeback_dirty_folio"


@pytest.fixture
def cache_file():
    # on the root disk's file system (tmpfs pages never enter the page cache this way)
    path = Path("/var/tmp") / f"pytracekit-cachestat-{id(object())}"
    path.write_bytes(b"x" * 4096 * PAGES)   # exists: creating it would dirty metadata too
    yield str(path)
    path.unlink()


@pytest.mark.root
def test_misses_and_dirties_as_perf_counts_them(cache_file):
    command = [sys.executable, "-c", SCRIPT, cache_file]
    # once untraced first: what else the command reads (the interpreter's files, the
    # file system's metadata blocks) is then cached for both the tool's run and perf's,
    # which ran second (a cold page of it added a folio to the tool's run only, once)
    subprocess.run(command, check=True, timeout=60)
    res = pytracekit("cachestat", "--json", "--", *command)
    assert res.returncode == 0, res.stderr
    objects = validated_json("cachestat", res.stdout)
    intervals = [o for o in objects if o["type"] == "interval"]
    misses = sum(o["misses"] for o in intervals)
    folios = sum(o["added_folios"] for o in intervals)
    dirties = sum(o["dirties"] for o in intervals)
    perf = perf_stat([ADD, DIRTY], command)
    assert folios == perf[ADD] and misses >= 2 * PAGES, (misses, folios, perf)
    # the file's own PAGES folios, and the few metadata folios (inode table,
    # bitmaps, group descriptors, journal) the file system dirties in the
    # writer's context; how many were clean before varies run to run (perf
    # runs the command again), never by a file's worth
    assert PAGES <= dirties <= PAGES + METADATA and PAGES <= perf[DIRTY] <= PAGES + METADATA, \
        (dirties, perf)
    assert all(o["hits"] is None and o["hitratio"] is None for o in intervals)
    assert objects[-1]["type"] == "loss" and objects[-1]["map_full"] == 0


@pytest.mark.root
def test_bcc_columns_with_timestamps_and_count(workload):
    res = pytracekit("cachestat", "-T", "0.3", "2", "--", workload, "sleep", "1", "1000")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "TIME         HITS   MISSES  DIRTIES HITRATIO   BUFFERS_MB  CACHED_MB"
    assert len(lines) == 3, lines
    assert all(re.match(r"^\d\d:\d\d:\d\d +- +\d+ +\d+ +- +\d+ +\d+$", line)
               for line in lines[1:]), lines

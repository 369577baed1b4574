"""biopattern against direct I/O to a private loop device (tests/block_fixture.py):
K sequential 64 KiB writes from sector 0, then R writes each elsewhere (random),
which `perf stat -a` counts too (block:block_rq_complete on the loop device)."""
import os

import pytest

from block_fixture import BLOCK, loop_disk  # noqa: F401 (fixture)
from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects
from perf_oracle import SystemWideCount

K, R = 8, 3


@pytest.mark.root
def test_sequential_and_random_requests(loop_disk, tmp_path):
    st = os.stat(loop_disk.path)
    dev = (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)
    with SystemWideCount([("block:block_rq_complete", f"dev == {dev}")], tmp_path) as perf:
        with Tool("biopattern", "--json", "-d", loop_disk.name) as tool, \
                Tool("biopattern", "-T", "-d", loop_disk.name) as text_tool:
            loop_disk.write(K)                   # blocks 0..K-1: the first has no predecessor
            for i in range(R):
                loop_disk.write(1, seek=K + 10 * (i + 1))    # gaps of 9 blocks: each random
            out, err = tool.stop()
            text, _ = text_tool.stop()
        [completed] = perf.stop()
    assert tool.returncode == 0, err
    [row] = events_of(json_objects(out, "biopattern"), "disk")
    assert (row["disk"], row["random"], row["sequential"], row["count"], row["bytes"]) == \
        (loop_disk.name, 1 + R, K - 1, completed, (K + R) * BLOCK)
    assert completed == K + R
    lines = text.splitlines()
    assert lines[0].split() == ["TIME", "DISK", "%RND", "%SEQ", "COUNT", "KBYTES"]
    rnd = round((1 + R) * 100 / (K + R))
    assert lines[1].split()[1:] == [loop_disk.name, str(rnd), str(100 - rnd), str(K + R),
                                    str((K + R) * BLOCK // 1024)]


def test_unknown_disk_is_one_line():
    res = pytracekit("biopattern", "-d", "nosuchdisk")
    assert res.returncode == 1 and res.stderr.count("\n") == 1

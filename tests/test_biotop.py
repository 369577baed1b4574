"""biotop against direct I/O to a private loop device (tests/block_fixture.py):
K writes and J reads of 64 KiB, one request each, which `perf stat -a`
counts too (block:block_rq_complete filtered on the loop device)."""
import os

import pytest

from block_fixture import BLOCK, loop_disk  # noqa: F401 (fixture)
from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects
from perf_oracle import SystemWideCount

K, J = 6, 4


def kernel_dev(path: str) -> int:
    st = os.stat(path)
    return (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)


@pytest.mark.root
def test_requests_and_bytes_per_process_and_direction(loop_disk, tmp_path):
    with SystemWideCount([("block:block_rq_complete", f"dev == {kernel_dev(loop_disk.path)}")],
                         tmp_path) as perf:
        with Tool("biotop", "--json", "-d", loop_disk.name, "--interval", "60") as tool:
            loop_disk.write(K)
            loop_disk.read(J)
            out, err = tool.stop()
        [completed] = perf.stop()
    assert tool.returncode == 0, err
    rows = events_of(json_objects(out, "biotop"), "io")
    assert completed == K + J == sum(r["io"] for r in rows), rows
    st = os.stat(loop_disk.path)
    got = sorted((r["comm"], r["direction"], r["io"], r["bytes"], r["disk"], r["major"],
                  r["minor"]) for r in rows)
    assert got == [(loop_disk.comm, d, n, n * BLOCK, loop_disk.name, os.major(st.st_rdev),
                    os.minor(st.st_rdev)) for d, n in (("R", J), ("W", K))]
    assert len({r["pid"] for r in rows}) == 2 and all(r["pid"] > 0 for r in rows)
    assert all(r["avg_ms"] > 0 for r in rows)


@pytest.mark.root
def test_command_text_columns(loop_disk):
    res = pytracekit("biotop", "-C", "-S", "-d", loop_disk.name, "--interval", "60", "--",
                     loop_disk.dd, "if=/dev/zero", f"of={loop_disk.path}", "oflag=direct",
                     f"bs={BLOCK}", f"count={K}", "status=none")
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.strip()]
    assert lines[0].split() == ["PID", "COMM", "D", "MAJ", "MIN", "DISK", "I/O", "Kbytes",
                                "AVGms"]
    st = os.stat(loop_disk.path)
    [row] = [line.split() for line in lines[1:]]
    assert row[1:8] == [loop_disk.comm, "W", str(os.major(st.st_rdev)), str(os.minor(st.st_rdev)),
                        loop_disk.name, str(K), str(K * BLOCK // 1024)]


def test_unknown_disk_is_one_line():
    res = pytracekit("biotop", "-d", "nosuchdisk")
    assert res.returncode == 1 and res.stderr.count("\n") == 1

"""biosnoop against direct I/O to a private loop device: one line per request."""
import pytest

from block_fixture import loop_disk  # noqa: F401 (fixture)
from conftest import Tool
from snoop_helpers import summary, validated_json

K = 8


@pytest.mark.root
def test_one_line_per_request_with_issuer_disk_and_size(loop_disk):
    with Tool("biosnoop", "-Q", "-P", "-d", loop_disk.name) as tool:
        loop_disk.write(K)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME(s)", "COMM", "PID", "DISK", "T", "SECTOR", "BYTES", "P",
                                "QUE(ms)", "LAT(ms)"]
    rows = [line.split() for line in lines[1:]]
    assert len(rows) == K
    assert {(r[1], r[3], r[4], r[6]) for r in rows} == {(loop_disk.comm, loop_disk.name, "W",
                                                         "65536")}
    assert [int(r[5]) for r in rows] == [i * 128 for i in range(K)]
    assert [r[7] for r in rows[1:]] == ["S"] * (K - 1)         # sequential after the first
    assert all(float(r[9]) >= 0 for r in rows)
    assert summary(err) == {"captured": K, "lost": 0, "unread": 0}


@pytest.mark.root
def test_json_reads(loop_disk):
    with Tool("biosnoop", "--json", "-d", loop_disk.name) as tool:
        loop_disk.read(3)
        out, err = tool.stop()
    objects = validated_json("biosnoop", out)
    events = [o for o in objects if o["type"] == "event"]
    assert [(e["comm"], e["bytes"], e["sector"], e["error"]) for e in events] == \
        [(loop_disk.comm, 65536, i * 128, 0) for i in range(3)]
    assert all("R" in e["rwbs"] for e in events)


def test_unknown_disk_is_one_line():
    from conftest import pytracekit
    from snoop_helpers import one_line_error
    res = pytracekit("biosnoop", "-d", "/dev/nosuchdisk", "--duration", "0.1")
    assert res.returncode == 1
    assert "no block device '/dev/nosuchdisk'" in one_line_error(res.stderr, "biosnoop")

"""hardirqs: real interrupts, so no exact counts; the disk's interrupt must
appear after direct I/O to it, and the output must be well formed."""
import os
import subprocess

import pytest

from conftest import Tool, pytracekit
from snoop_helpers import one_line_error, validated_json


def _root_disk() -> str:
    dev = os.stat("/var/tmp").st_dev
    return os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}"))


def _disk_irq_prefix() -> str:
    """virtio block devices name their interrupts after the virtio device: virtio1-req.0."""
    device = os.path.realpath(f"/sys/block/{_root_disk()}/device")
    return os.path.basename(device) + "-"


def _direct_io(tmp_dir: str, count: int = 10) -> None:
    path = os.path.join(tmp_dir, f"hardirqs-{os.getpid()}")
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k", f"count={count}",
                        "oflag=direct", "status=none"], check=True)
    finally:
        os.unlink(path)


@pytest.mark.root
def test_disk_interrupt_appears_with_counts():
    if not os.path.basename(os.path.realpath(f"/sys/block/{_root_disk()}/device")).startswith("virtio"):
        pytest.skip("the root disk is not a virtio device; its interrupt name is not known")
    with Tool("hardirqs", "-C") as tool:
        _direct_io("/var/tmp")
        out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["HARDIRQ", "TOTAL_count"]
    rows = {line.rsplit(None, 1)[0]: int(line.rsplit(None, 1)[1]) for line in lines[1:]}
    disk = [name for name in rows if name.startswith(_disk_irq_prefix())]
    assert disk and all(rows[name] >= 1 for name in disk)
    known = open("/proc/interrupts").read()
    assert all(name in known for name in rows)        # real handler names


@pytest.mark.root
def test_distribution_json_validates():
    with Tool("hardirqs", "-d", "--json") as tool:
        _direct_io("/var/tmp", 4)
        out, err = tool.stop()
    objects = validated_json("hardirqs", out)
    hists = [o for o in objects if o["type"] == "histogram"]
    assert hists and all(h["unit"] == "usecs" and h["total"] >= 1 for h in hists)
    assert objects[-1]["type"] == "loss"


@pytest.mark.root
def test_totals_in_time_units_with_interval_and_count():
    res = pytracekit("hardirqs", "-N", "-T", "0.3", "2")
    assert res.returncode == 0, res.stderr
    headers = [line for line in res.stdout.splitlines() if line.startswith("HARDIRQ")]
    assert headers == ["HARDIRQ" + " " * 20 + "TOTAL_nsecs"] * 2


def test_counts_and_distributions_together_is_a_usage_error():
    res = pytracekit("hardirqs", "-C", "-d", "--duration", "0.1")
    assert res.returncode == 2
    assert "cannot be combined" in one_line_error(res.stderr, "hardirqs")

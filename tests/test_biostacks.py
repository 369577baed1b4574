"""biostacks against direct I/O to a private loop device: each dd request
counted once under the kernel stack that started it (the write and the read
paths apart), as perf stat counts block_rq_complete on that device."""
import os
import re

import pytest

from block_fixture import loop_disk  # noqa: F401 (fixture)
from conftest import Tool, pytracekit
from snoop_helpers import perf_stat, validated_json

K = 6


@pytest.mark.root
def test_read_and_write_stacks_counted_apart(loop_disk):
    with Tool("biostacks", "--json", "-d", loop_disk.name) as tool:
        loop_disk.write(K)
        loop_disk.read(K - 2)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    objects = validated_json("biostacks", out)
    ours = [o for o in objects if o["type"] == "stack" and o["comm"] == loop_disk.comm]
    writes = [o for o in ours if "blkdev_write_iter" in o["kernel_stack"]]
    reads = [o for o in ours if "blkdev_read_iter" in o["kernel_stack"]]
    assert sum(o["total"] for o in writes) == K and sum(o["total"] for o in reads) == K - 2
    assert sum(o["total"] for o in ours) == 2 * K - 2 and {o["disk"] for o in ours} == {loop_disk.name}
    assert all(o["kernel_stack"][-1].startswith("entry_SYSCALL") for o in ours), ours
    assert objects[-1]["type"] == "loss" and objects[-1]["map_full"] == 0


@pytest.mark.root
def test_a_command_in_libbpf_tools_layout_as_perf_counts_it(loop_disk):
    command = [loop_disk.dd, "if=/dev/zero", f"of={loop_disk.path}", "oflag=direct",
               "bs=65536", f"count={K}", "status=none"]
    res = pytracekit("biostacks", "-m", "--", *command)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert re.match(rf"^{re.escape(loop_disk.comm)} +\d+ +{loop_disk.name} *$", lines[0]), lines
    hist = lines.index("     msecs               : count     distribution")
    assert "blkdev_write_iter" in lines[1:hist]
    total = sum(int(line.split(":")[1].split()[0]) for line in lines[hist + 1:] if "->" in line)
    st = os.stat(loop_disk.path)
    dev = (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)
    perf = perf_stat(["block:block_rq_complete"], command, system_wide=True,
                     filter_=f"dev == {dev}")
    assert total == perf["block:block_rq_complete"] == K

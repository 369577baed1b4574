"""Process churn: the continuous profilers (cprofile, export's profile
source) see hundreds of short-lived processes; once warm, their file
descriptors and memory stay flat (symbols.py's bounded caches, no per-process
resolver state kept, stacks sharing their frames). Real probes on the
workload's forkchild mode."""
import os
import subprocess
import time

import pytest

from conftest import Tool
from fleet_helpers import free_port

WARM_UP = 300        # processes before the baseline
MEASURED = 300       # processes after it
FD_SLACK = 3         # sockets, a window's file being written
RSS_SLACK_KB = 24 * 1024   # was ~200 KB and 2 fds per process before


def _usage(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return len(os.listdir(f"/proc/{pid}/fd")), rss


def _churn(workload: str, n: int, between=None) -> None:
    for i in range(n):   # a parent and a child spinning 15 ms of CPU: both get sampled
        subprocess.run([workload, "forkchild", "15"], check=True, timeout=30)
        if between is not None and i % 100 == 99:
            between()


def _scrape(port: int):
    def get() -> None:
        from fleet_helpers import http_get
        status, _body = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
    return get


@pytest.mark.root
@pytest.mark.parametrize("tool", ["cprofile", "export"])
def test_fds_and_rss_stay_flat_over_process_churn(workload, tmp_path, tool):
    port = free_port()
    args = (["cprofile", "--every", "1", "--dir", str(tmp_path), "-F", "199"]
            if tool == "cprofile" else
            ["export", "--tool", "profile,frequency=199", "--listen", f"127.0.0.1:{port}"])
    between = (lambda: time.sleep(1.2)) if tool == "cprofile" else _scrape(port)
    with Tool(*args) as running:
        pid = running.proc.pid
        _churn(workload, WARM_UP, between)
        between()
        fds0, rss0 = _usage(pid)
        readings = []
        for _ in range(MEASURED // 100):
            _churn(workload, 100, between)
            between()
            readings.append(_usage(pid))
        running.stop()
    assert running.returncode == 0
    for fds, rss in readings:
        assert fds <= fds0 + FD_SLACK, (fds0, readings)
        assert rss <= rss0 + RSS_SLACK_KB, (rss0, readings)

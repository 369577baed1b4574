"""Process churn: the continuous profilers (cprofile, export's profile
source) see hundreds of short-lived processes; once warm, their file
descriptors and memory stay flat (symbols.py's bounded caches, no per-process
resolver state kept, stacks sharing their frames). Real probes on the
workload's forkchild mode."""
import os
import signal
import subprocess
import time

import pytest

from conftest import Tool
from fleet_helpers import free_port

WARM_UP = 300        # processes before the baseline
MEASURED = 300       # processes after it
FD_SLACK = 5         # sockets, a window's file being written, a scrape's connection
RSS_SLACK_KB = 24 * 1024   # was ~200 KB and 2 fds per process before
# The profilers sample every process: another test's (a compile's LLVM
# symbolized) would be memory the churn did not cause.
pytestmark = pytest.mark.alone


def _usage(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return len(os.listdir(f"/proc/{pid}/fd")), rss


def _churn(workload: str, n: int, between=None) -> None:
    for i in range(n):   # a parent and a child spinning 15 ms of CPU: both get sampled
        subprocess.run([workload, "forkchild", "15"], check=True, timeout=30)
        if between is not None and i % 100 == 99:
            between()


def _scrape(port: int) -> None:
    from fleet_helpers import http_get
    # a scrape symbolizes the window: slow on a loaded machine, not a failure
    status, _body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=120)
    assert status == 200


@pytest.fixture(scope="module")
def churned(workload, tmp_path_factory) -> dict[str, tuple]:
    """Both continuous profilers run through the same churn (one churn, not
    one per tool): tool -> (its rc, fds0, rss0, readings, (out, err))."""
    port = free_port()
    args = {"cprofile": ["cprofile", "--every", "1", "--dir",
                         str(tmp_path_factory.mktemp("cprofile")), "-F", "199"],
            # python=false: export's profile is cumulative, and it samples the
            # Python processes beside it (cprofile, this test): with Python
            # frames each line they run is a new stack, data kept until
            # py_stacks is full (PY_STACKS_SIZE), not per-process state
            "export": ["export", "--tool", "profile,frequency=199,python=false", "--listen",
                       f"127.0.0.1:{port}"]}

    def between() -> None:
        _scrape(port)       # export serves a scrape
        time.sleep(1.2)     # cprofile writes a window (--every 1)

    with Tool(*args["cprofile"]) as cprofile, Tool(*args["export"]) as export:
        tools = {"cprofile": cprofile, "export": export}
        _churn(workload, WARM_UP, between)
        between()
        base = {name: _usage(t.proc.pid) for name, t in tools.items()}
        readings: dict[str, list] = {name: [] for name in tools}
        for _ in range(MEASURED // 100):
            _churn(workload, 100, between)
            between()
            for name, t in tools.items():
                if t.proc.poll() is not None:
                    raise AssertionError(f"{name} ended during the churn", t.wait(timeout=60))
                readings[name].append(_usage(t.proc.pid))
        for t in tools.values():   # both end side by side (each prints a last window)
            t.proc.send_signal(signal.SIGINT)
        outputs = {name: t.wait(timeout=300) for name, t in tools.items()}
    return {name: (tools[name].returncode, *base[name], readings[name], outputs[name])
            for name in tools}


@pytest.mark.root
@pytest.mark.parametrize("tool", ["cprofile", "export"])
def test_fds_and_rss_stay_flat_over_process_churn(churned, tool):
    returncode, fds0, rss0, readings, (_out, err) = churned[tool]
    assert returncode == 0, err
    for fds, rss in readings:
        assert fds <= fds0 + FD_SLACK, (fds0, readings)
        assert rss <= rss0 + RSS_SLACK_KB, (rss0, readings)

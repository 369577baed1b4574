"""The perf the tests start in the background (tests/perf_oracle.py) never
outlives a failing test: perf and the command it counts are killed when the
block running them is left by an exception or a timeout."""
import os
import subprocess
from pathlib import Path

import pytest

from conftest import wait_until
from perf_oracle import SystemWideCount, perf_running
from snoop_helpers import perf_stat

pytestmark = pytest.mark.root


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for init counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _pid_in(path: Path) -> int:
    assert wait_until(lambda: path.exists() and path.read_text().endswith("\n"), timeout=30)
    return int(path.read_text())


def _sleeper(pid_file: Path) -> list[str]:
    """A command that writes its pid, then would run for ten minutes."""
    return ["sh", "-c", f"echo $$ > {pid_file}; exec sleep 600"]


def test_a_failing_block_kills_perf_stat_a_and_its_command(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(RuntimeError, match="the test failed"):
        with perf_running(["perf", "stat", "-a", "-x,", "-e", "sched:sched_process_exec", "--",
                           *_sleeper(pid_file)], stderr=subprocess.PIPE) as proc:
            command = _pid_in(pid_file)
            raise RuntimeError("the test failed")
    assert proc.returncode == -9
    assert wait_until(lambda: _gone(command), timeout=30), "perf's command still runs"


def test_system_wide_count_stops_with_counts_or_is_killed_on_failure(tmp_path):
    me = os.getpid()
    for _attempt in range(5):   # another tracer's program may drop events for perf (issue 11)
        with SystemWideCount([("syscalls:sys_enter_getppid", f"common_pid == {me}"),
                              ("syscalls:sys_enter_getpgid", f"common_pid == {me}")],
                             tmp_path) as perf:
            for _ in range(5):
                os.getppid()
            os.getpgid(0)
            counts = perf.stop()
        if counts == [5, 1]:
            break
    assert counts == [5, 1]
    with pytest.raises(AssertionError, match="the test failed"):
        with SystemWideCount([("syscalls:sys_enter_getppid", f"common_pid == {me}")],
                             tmp_path) as perf:
            assert perf.proc.poll() is None
            raise AssertionError("the test failed")
    assert perf.proc.returncode == -9 and _gone(perf.proc.pid)


def test_perf_stat_timing_out_kills_perf_and_its_command(tmp_path):
    pid_file = tmp_path / "pid"
    with pytest.raises(subprocess.TimeoutExpired):
        perf_stat(["sched:sched_process_exec"], _sleeper(pid_file), timeout=8)
    assert wait_until(lambda: _gone(_pid_in(pid_file)), timeout=30), "perf's command still runs"

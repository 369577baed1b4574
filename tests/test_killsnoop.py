"""killsnoop against os.kill() calls the test makes: exact counts, signals,
targets and results."""
import errno
import os
import signal
import subprocess

import pytest

from conftest import Tool, pytracekit
from snoop_helpers import one_line_error, summary, validated_json


def _kills(probes: int) -> tuple[int, int]:
    """`probes` kill(child, 0), one SIGTERM, then two kill()s of the dead pid."""
    child = subprocess.Popen(["sleep", "30"])
    for _ in range(probes):
        os.kill(child.pid, 0)
    os.kill(child.pid, signal.SIGTERM)
    child.wait()
    for _ in range(2):
        try:
            os.kill(child.pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    return child.pid, probes


@pytest.mark.root
def test_every_kill_with_signal_target_and_result():
    with Tool("killsnoop", "-p", str(os.getpid())) as tool:
        child, probes = _kills(6)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"]
    rows = [line.split()[1:] for line in lines[1:]]
    mine = [r for r in rows if r[3] == str(child)]
    assert [(r[2], r[4]) for r in mine] == [("0", "0")] * probes + [("15", "0")] + \
        [("10", str(-errno.ESRCH))] * 2
    assert {r[0] for r in mine} == {str(os.getpid())}
    assert summary(err)["lost"] == 0


@pytest.mark.root
def test_failed_only_and_signal_filter_in_json():
    with Tool("killsnoop", "-x", "-s", "USR1", "--json", "-p", str(os.getpid())) as tool:
        child, _ = _kills(3)
        out, err = tool.stop()
    objects = validated_json("killsnoop", out)
    events = [o for o in objects if o["type"] == "event"]
    assert [(e["tpid"], e["sig"], e["ret"]) for e in events] == \
        [(child, signal.SIGUSR1, -errno.ESRCH)] * 2
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == 2


def test_unknown_signal_is_a_usage_error():
    res = pytracekit("killsnoop", "-s", "NOPE", "-d", "0.1")
    assert res.returncode == 2
    assert "unknown signal 'NOPE'" in one_line_error(res.stderr, "killsnoop")


@pytest.mark.root
def test_tkill_and_tgkill_from_raise_and_pthread_kill(workload):
    """The workload sends N signals each through kill(), raise() (tgkill),
    tkill() and pthread_kill() (tgkill to its worker thread): every one is
    shown with its signal and the pid or thread it was sent to."""
    n = 5
    res = pytracekit("killsnoop", "--", workload, "signals", str(n))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"]
    worker = int(next(line for line in lines if line.startswith("worker_tid="))
                 .split()[0].split("=")[1])
    rows = [line.split()[1:] for line in lines[1:] if not line.startswith("worker_tid=")]
    pid = rows[0][0]
    assert {(r[0], r[1], r[4]) for r in rows} == {(pid, "workload", "0")}
    assert [(int(r[2]), r[3]) for r in rows] == \
        [(signal.SIGUSR1, pid)] * n + [(signal.SIGUSR2, pid)] * n + \
        [(signal.SIGURG, pid)] * n + [(signal.SIGWINCH, str(worker))] * n
    assert summary(res.stderr) == {"captured": 4 * n, "lost": 0, "unread": 0}

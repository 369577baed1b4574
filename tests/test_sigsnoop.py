"""sigsnoop against the workload's signals mode (N each of kill, raise,
tkill and pthread_kill, every one handled): each signal generated and
delivered exactly once, counted as perf counts the same tracepoint."""
import signal

import pytest

from conftest import pytracekit
from snoop_helpers import one_line_error, perf_stat, summary, validated_json

N = 3
SENT = [signal.SIGUSR1] * N + [signal.SIGUSR2] * N + [signal.SIGURG] * N + \
    [signal.SIGWINCH] * N


def _worker(stdout: str) -> int:
    line = next(x for x in stdout.splitlines() if x.startswith("worker_tid="))
    return int(line.split()[0].split("=")[1])


@pytest.mark.root
def test_every_signal_generated_with_target_and_result(workload):
    command = [workload, "signals", str(N)]
    res = pytracekit("sigsnoop", "-n", "--", *command)
    assert res.returncode == 0, res.stderr
    lines = [x for x in res.stdout.splitlines() if not x.startswith("worker_tid=")]
    assert lines[0].split() == ["TIME", "PID", "COMM", "SIG", "TPID", "RESULT"]
    rows = [x.split()[1:] for x in lines[1:]]
    pid = rows[0][0]
    worker = str(_worker(res.stdout))
    assert {(r[0], r[1]) for r in rows} == {(pid, "workload")}
    # 4N sent by the workload, delivered to itself (SIGWINCH to its worker
    # thread), then its exit's SIGCHLD to its parent, the tool (which ignores it)
    assert [(r[2], r[3], r[4]) for r in rows[:-1]] == \
        [(s.name, worker if s == signal.SIGWINCH else pid, "delivered") for s in SENT]
    assert rows[-1][2:] == ["SIGCHLD", rows[-1][3], "ignored"]
    assert summary(res.stderr) == {"captured": 4 * N + 1, "lost": 0, "unread": 0}
    # perf's counters leave the task in exit before its SIGCHLD is sent
    perf = perf_stat(["signal:signal_generate"], command)
    assert perf["signal:signal_generate"] == len(rows) - 1 == 4 * N


@pytest.mark.root
def test_every_delivery_with_its_action_in_json(workload):
    command = [workload, "signals", str(N)]
    res = pytracekit("sigsnoop", "--deliver", "--json", "--", *command)
    assert res.returncode == 0, res.stderr
    worker = _worker(res.stdout)
    objects = validated_json("sigsnoop", "\n".join(
        x for x in res.stdout.splitlines() if not x.startswith("worker_tid=")))
    events = [o for o in objects if o["type"] == "event"]
    pid = events[0]["pid"]
    assert {(e["pid"], e["kind"]) for e in events} == {(pid, "deliver")}
    # kill() is SI_USER, raise/tkill/pthread_kill SI_TKILL; the worker, still
    # in pause(), gets the exit's SIGKILL (default action) last
    assert [(e["sig"], e["tid"], e["code"], e["action"]) for e in events] == \
        [(s, worker if s == signal.SIGWINCH else pid, 0 if s == signal.SIGUSR1 else -6,
          "handler") for s in SENT] + [(signal.SIGKILL, worker, 0, "default")]
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == len(events)
    perf = perf_stat(["signal:signal_deliver"], command)
    assert perf["signal:signal_deliver"] == len(events)


@pytest.mark.root
def test_failed_only_and_filters(workload):
    """-x: only the SIGCHLD nobody handles; -s with -T: one signal to one thread."""
    res = pytracekit("sigsnoop", "-x", "--json", "--", workload, "signals", str(N))
    events = [o for o in validated_json("sigsnoop", "\n".join(
        x for x in res.stdout.splitlines() if not x.startswith("worker_tid=")))
        if o["type"] == "event"]
    assert [(e["sig"], e["result"]) for e in events] == [(signal.SIGCHLD, "ignored")]
    res = pytracekit("sigsnoop", "-s", "URG", "--", workload, "signals", str(N))
    rows = [x.split() for x in res.stdout.splitlines()[1:] if not x.startswith("worker_tid=")]
    assert [r[3] for r in rows] == [str(int(signal.SIGURG))] * N


def test_deliver_takes_no_generate_filters():
    res = pytracekit("sigsnoop", "--deliver", "-x", "-d", "0.1")
    assert res.returncode == 2
    assert "with --deliver use -p" in one_line_error(res.stderr, "sigsnoop")

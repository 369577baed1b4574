"""runqslower against the workload's runqdelay mode: two SCHED_FIFO threads
on CPU 0, the spinner preempting the waiter N times for MS ms each, so
exactly N waits of at least MS ms, each behind the spinner."""
import pytest

from conftest import pytracekit
from sched_helpers import unseen_warned
from snoop_helpers import summary, validated_json

N, MS = 4, 50
THRESHOLD_US = MS * 800   # the waiter's other waits (before it is FIFO) are far shorter


def _tids(stdout: str) -> tuple[int, int, list[str]]:
    lines = stdout.splitlines()
    [tids] = [x for x in lines if x.startswith("spinner_tid=")]
    lines.remove(tids)
    spinner, waiter = (int(w.split("=")[1]) for w in tids.split())
    return spinner, waiter, lines


@pytest.mark.root
def test_each_wait_with_the_task_before_it(workload):
    res = pytracekit("runqslower", "-P", str(THRESHOLD_US), "--", workload, "runqdelay", str(N),
                     str(MS))
    assert res.returncode == 0, res.stderr
    spinner, waiter, lines = _tids(res.stdout)
    assert lines[0].split() == ["TIME", "COMM", "TID", "PREV", "COMM", "PREV", "TID",
                                "LAT(us)"]
    rows = [line.split() for line in lines[1:]]
    # each wait, unless one whose start or end no tracepoint reported was
    # counted as unseen instead (bpf/ptk_sched.h): never one of a wrong length
    seen = N - min(N, unseen_warned(res.stderr))
    assert seen <= len(rows) <= N
    assert [r[1:5] for r in rows] \
        == [["workload", str(waiter), "workload", str(spinner)]] * len(rows)
    assert all(int(r[5]) >= MS * 1000 for r in rows), rows
    assert summary(res.stderr) == {"captured": len(rows), "lost": 0, "unread": 0}
    assert f"Tracing run queue latency higher than {THRESHOLD_US} us" in res.stderr


@pytest.mark.root
def test_json_and_a_threshold_over_every_wait(workload):
    res = pytracekit("runqslower", "--json", str(THRESHOLD_US), "--", workload, "runqdelay",
                     str(N), str(MS))
    spinner, waiter, lines = _tids(res.stdout)
    objects = validated_json("runqslower", "\n".join(lines))
    events = [o for o in objects if o["type"] == "event"]
    [loss] = [o for o in objects if o["type"] == "loss"]
    assert N - min(N, loss["unseen"]) <= len(events) <= N
    assert [(e["pid"], e["tid"], e["prev_tid"]) for e in events] \
        == [(waiter, waiter, spinner)] * len(events)
    res = pytracekit("runqslower", str(MS * 4000), "--", workload, "runqdelay", str(N), str(MS))
    assert res.returncode == 0 and summary(res.stderr)["captured"] == 0, res.stderr

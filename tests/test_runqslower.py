"""runqslower against the workload's runqdelay mode: two SCHED_FIFO threads
on CPU 0, the spinner preempting the waiter N times for MS ms each, so
exactly N waits of at least MS ms, each behind the spinner."""
import pytest

from conftest import pytracekit
from sched_helpers import unseen_warned
from snoop_helpers import summary, validated_json

N, MS = 4, 50
THRESHOLD_US = MS * 800   # the waiter's other waits (before it is FIFO): shorter unless loaded


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
    assert summary(res.stderr) == {"captured": len(rows), "lost": 0, "unread": 0}
    # each wait behind the spinner, unless one whose start or end no
    # tracepoint reported was counted as unseen instead (bpf/ptk_sched.h):
    # never one of a wrong length
    behind = [r for r in rows if r[4] == str(spinner)]
    seen = N - min(N, unseen_warned(res.stderr))
    assert seen <= len(behind) <= N, res.stdout
    assert [r[1:4] for r in behind] == [["workload", str(waiter), "workload"]] * len(behind)
    assert all(int(r[5]) >= MS * 1000 for r in behind), rows
    # on a loaded machine the waiter may also wait that long before it is
    # FIFO, behind some other task
    assert all(r[2] == str(waiter) for r in rows), res.stdout
    assert f"Tracing run queue latency higher than {THRESHOLD_US} us" in res.stderr


@pytest.mark.root
def test_json_and_a_threshold_over_every_wait(workload):
    res = pytracekit("runqslower", "--json", str(THRESHOLD_US), "--", workload, "runqdelay",
                     str(N), str(MS))
    spinner, waiter, lines = _tids(res.stdout)
    objects = validated_json("runqslower", "\n".join(lines))
    events = [o for o in objects if o["type"] == "event"]
    [loss] = [o for o in objects if o["type"] == "loss"]
    behind = [e for e in events if e["prev_tid"] == spinner]
    assert N - min(N, loss["unseen"]) <= len(behind) <= N, objects
    assert [(e["pid"], e["tid"]) for e in events] == [(waiter, waiter)] * len(events), objects
    # over every wait behind the spinner: none of them (a loaded machine, or
    # another FIFO task on CPU 0, may still hold the waiter that long)
    res = pytracekit("runqslower", "-P", str(MS * 4000), "--", workload, "runqdelay", str(N),
                     str(MS))
    assert res.returncode == 0, res.stderr
    spinner, waiter, lines = _tids(res.stdout)
    rows = [line.split() for line in lines[1:]]
    assert summary(res.stderr)["captured"] == len(rows)
    assert [r for r in rows if r[4] == str(spinner)] == [], res.stdout

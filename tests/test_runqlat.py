"""runqlat against the workload's cpuburst mode: N sleeps, so at least N
wake-up-to-run samples, never more than the switches the workload counted."""
import subprocess

import pytest

from conftest import pytracekit, pytracekit_probes_left
from sched_helpers import json_lines, switch_counts, traced_cpuburst, validate
from pytracekit.families.periodic import split_interval_count
from pytracekit.errors import UsageError

N = 10


@pytest.mark.root
def test_runqlat_counts_every_wakeup_of_the_process(workload):
    out, counts = traced_cpuburst(workload, ["runqlat", "--json"], N, 2000)
    objs = json_lines(out)
    validate("runqlat", objs)
    hists = [o for o in objs if o["type"] == "histogram"]
    assert len(hists) == 1 and hists[0]["unit"] == "usecs"
    nvcsw, nivcsw = switch_counts(counts)
    loss = objs[-1]
    unseen = loss.pop("unseen")
    # each of the N sleeps ends in a wakeup, measured or (its wakeup or
    # switch-in not traced: bpf/ptk_sched.h) counted as unseen; every wait
    # ends in a switch-in, each after a switch-out the workload counted
    assert N <= hists[0]["total"] + unseen <= nvcsw + nivcsw
    assert loss == {"type": "loss", "lost_events": 0, "stack_errors": 0, "map_full": 0,
                    "unknown_frames": 0, "unreadable_strings": 0,
                    "unwind_fallback": 0, "unwind_fp_steps": 0, "unwind_incomplete": 0,
                    "missed_events": 0}
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_runqlat_per_pid_text_has_bcc_sections(workload):
    res = pytracekit("runqlat", "-P", "-m", "--", workload, "cpuburst", "3", "1000")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    sections = [l for l in lines if l.startswith("pid = ")]
    assert len(sections) == 1
    assert "msecs" in res.stdout and "distribution" in res.stdout


@pytest.mark.root
def test_runqlat_interval_and_count_print_count_histograms(workload):
    proc = subprocess.Popen([workload, "sleep", "500", "10"])
    try:
        res = pytracekit("runqlat", "-T", "-p", str(proc.pid), "0.3", "2")
    finally:
        proc.kill()
        proc.wait()
    assert res.returncode == 0, res.stderr
    stamps = [l for l in res.stdout.splitlines() if l.count(":") == 2 and len(l) == 8]
    assert len(stamps) == 2
    assert res.stdout.count("distribution") == 2     # 10 ms sleeps: wakeups in each


def test_interval_count_and_command_split():
    assert split_interval_count(("1", "5")) == (1.0, 5, ())
    assert split_interval_count(("0.5", "./prog", "3")) == (0.5, None, ("./prog", "3"))
    assert split_interval_count(("./prog", "3")) == (None, None, ("./prog", "3"))
    with pytest.raises(UsageError):
        split_interval_count(("1", "2.5"))
    with pytest.raises(UsageError):
        split_interval_count(("0",))


@pytest.mark.root
def test_runqlat_pidnss_labels_by_pid_namespace_inode(workload):
    import os
    res = pytracekit("runqlat", "--pidnss", "--json", "--", workload, "sleep", "5", "5")
    assert res.returncode == 0, res.stderr
    objs = json_lines(res.stdout)
    validate("runqlat", objs)
    ours = os.stat("/proc/self/ns/pid").st_ino
    assert [o["pidns"] for o in objs if o["type"] == "histogram"] == [ours]

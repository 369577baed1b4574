"""oomkill against a process that touches more memory than its memory
cgroup allows (never the host's memory): exactly one OOM kill, of that
process, triggered by it, as perf counts oom:mark_victim."""
import subprocess

import pytest

from conftest import Tool, pytracekit
from memcg_helpers import memory_cgroup
from snoop_helpers import perf_stat, summary, validated_json

LIMIT = 32 << 20
PAGES = 4 * LIMIT // 4096      # four times the limit: killed for sure


@pytest.mark.root
def test_the_kill_of_a_pid_ends_the_run(workload, tmp_path):
    go = tmp_path / "go"
    with memory_cgroup(LIMIT) as inside:
        hog = subprocess.Popen(inside + [workload, "--go-file", str(go), "touch", str(PAGES), "0"])
        try:
            tool = Tool("oomkill", "-p", str(hog.pid)).start()
            go.touch()
            assert hog.wait(timeout=60) == -9
            out, err = tool.wait(timeout=30)
        finally:
            if hog.poll() is None:
                hog.kill()
                hog.wait()
    assert tool.returncode == 0, err
    [line] = out.splitlines()
    assert line.split(" ", 1)[1].startswith(
        f'Triggered by PID {hog.pid} ("workload"), OOM kill of PID {hog.pid} ("workload"), '
        "total-vm "), line
    assert " kB, loadavg: " in line
    assert summary(err) == {"captured": 1, "lost": 0, "unread": 0}


@pytest.mark.root
def test_json_with_the_victims_memory_and_perf_agrees(workload):
    with memory_cgroup(LIMIT) as inside:
        command = inside + [workload, "touch", str(PAGES), "0"]
        res = pytracekit("oomkill", "--json", "--", *command)
        assert res.returncode == 0, res.stderr
        assert perf_stat(["oom:mark_victim"], command)["oom:mark_victim"] == 1
    objects = validated_json("oomkill", res.stdout)
    [kill] = [o for o in objects if o["type"] == "event"]
    assert kill["pid"] == kill["trigger_pid"] and kill["comm"] == kill["trigger_comm"] == \
        "workload"
    assert kill["uid"] == 0 and kill["oom_score_adj"] == 0
    # killed at the limit: its anonymous memory is what the cgroup holds, at most the limit
    assert LIMIT // 2048 < kill["anon_rss_kb"] <= LIMIT // 1024 < kill["total_vm_kb"]
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == 1

"""top: in-kernel on-CPU accounting catches short-lived processes; batch, UI, functions."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, Tool, pytracekit, wait_until
from whohelpers import GatedWorkload, as_nobody, validate_json_lines

from pytracekit.cputime import Accountant, TaskTime
from pytracekit.render.top import cpu_time


def _next_json(tool):
    line = tool.proc.stdout.readline()
    assert line, tool.proc.stderr.read()
    return json.loads(line)


@pytest.mark.root
def test_child_living_50ms_between_two_refreshes_is_counted(workload):
    tool = Tool("top", "-b", "--json", "-d", "1", "-n", "2").start()
    try:
        first = _next_json(tool)
        assert first["type"] == "refresh"
        proc = subprocess.Popen([workload, "forkchild", "50"])
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = 0
        assert status == 0
        second = _next_json(tool)
        out, err = tool.wait()
    finally:
        if tool.proc.poll() is None:
            tool.proc.kill()
    validate_json_lines("top", json.dumps(first) + "\n" + json.dumps(second) + "\n" + out)
    rows = {r["pid"]: r for r in second["rows"]}
    assert proc.pid in rows, second
    # Other workloads may run on this machine: ours is the exited `workload` whose
    # time, with its parent's, is what the kernel says the pair used (wait4).
    kernel_ns = (usage.ru_utime + usage.ru_stime) * 1e9
    parent_ns = rows[proc.pid]["cpu_ns"]
    children = [r for pid, r in rows.items() if r["comm"] == "workload" and pid != proc.pid
                and r["exited"]]
    child = min(children, key=lambda r: abs(r["cpu_ns"] + parent_ns - kernel_ns))
    assert abs(child["cpu_ns"] + parent_ns - kernel_ns) < 2e6, (child, parent_ns, kernel_ns)
    assert not os.path.exists(f"/proc/{child['pid']}")      # it ended before this refresh
    assert 1.0 <= child["cpu_pct"] <= 6.0                  # 50 ms of a 1 s interval


@pytest.mark.root
def test_batch_text_sorted_by_pid(workload):
    res = pytracekit("top", "-b", "-n", "2", "-d", "0.3", "-s", "pid")
    assert res.returncode == 0, res.stderr
    screens = re.split(r"\n(?=top - )", res.stdout.strip())
    assert len(screens) == 2
    for screen in screens:
        lines = screen.strip().splitlines()
        assert re.match(r"^top - \d\d:\d\d:\d\d  \d+ CPUs  interval 0\.\d\d s  busy ", lines[0])
        assert lines[2].split() == ["PID", "THR", "COMM", "%CPU", "TIME+"]
        pids = [int(line.split()[0]) for line in lines[3:]]
        assert pids and pids == sorted(pids)


@pytest.mark.root
def test_threads_of_one_process(workload, tmp_path):
    with GatedWorkload(workload, tmp_path, "mutex", "300") as w:
        tool = Tool("top", "-b", "-H", "--json", "-d", "0.5", "-n", "1", "-p", str(w.pid)).start()
        w.go.touch()
        out, err = tool.wait()
        w.proc.wait()
    refresh = validate_json_lines("top", out)[0]
    tids = {r["tid"] for r in refresh["rows"]}
    assert {r["pid"] for r in refresh["rows"]} == {w.pid}
    assert len(tids - {w.pid}) == 2          # the two mutex workers


@pytest.mark.root
def test_functions_profile_names_the_hot_function(workload, tmp_path):
    with GatedWorkload(workload, tmp_path, "spin", "1.5") as w:
        tool = Tool("top", "--functions", "-b", "--json", "-d", "1", "-n", "1",
                    "-p", str(w.pid)).start()
        w.go.touch()
        out, err = tool.wait()
        w.proc.wait()
    assert tool.returncode == 0, err
    objs = validate_json_lines("top", out)
    rows = objs[0]["rows"]
    assert rows[0]["symbol"] == "spin_inner" and rows[0]["module"] == "workload"
    assert rows[0]["pct"] > 50 and not rows[0]["kernel"]


@pytest.mark.root
def test_terminal_ui_sorts_resizes_and_quits():
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (deps/apt/top.txt)")
    name = f"ptk-top-{os.getpid()}"
    cmd = f"cd {ROOT} && {sys.executable} -m pytracekit top -d 0.3"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30", cmd],
                   check=True)

    def pane() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                              text=True).stdout

    try:
        assert wait_until(lambda: "%CPU" in pane(), timeout=20), pane()
        assert "sort: cpu" in pane()
        subprocess.run(["tmux", "send-keys", "-t", name, "N"], check=True)
        assert wait_until(lambda: "sort: pid" in pane(), timeout=5), pane()
        subprocess.run(["tmux", "resize-window", "-t", name, "-x", "60", "-y", "12"], check=True)
        assert wait_until(lambda: len(pane().rstrip("\n").splitlines()) <= 12 and
                          "%CPU" in pane(), timeout=5), pane()
        assert all(len(line) <= 60 for line in pane().splitlines())
        subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        gone = lambda: subprocess.run(["tmux", "has-session", "-t", name],
                                      capture_output=True).returncode != 0
        assert wait_until(gone, timeout=10)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)


def test_accountant_keeps_exited_tasks_until_reported():
    acc = Accountant(ncpu=2)
    acc.refresh([TaskTime(0, 0, "idle", 0)], {}, now_ns=0)
    refresh, forget = acc.refresh([TaskTime(0, 0, "idle", 1_500_000_000),
                                   TaskTime(7, 7, "short", 50_000_000, exited=True),
                                   TaskTime(8, 8, "hog", 100_000_000)],
                                  {8: 350_000_000}, now_ns=1_000_000_000)
    rows = {u.pid: u for u in refresh.processes}
    assert rows[7].cpu_pct(refresh.interval_ns) == 5.0 and rows[7].exited
    assert rows[8].delta_ns == 450_000_000
    assert refresh.busy_pct == 25.0 and forget == []
    refresh, forget = acc.refresh([TaskTime(7, 7, "short", 50_000_000, exited=True),
                                   TaskTime(8, 8, "hog", 500_000_000)],
                                  {8: 10}, now_ns=2_000_000_000)
    assert forget == [7] and [u.pid for u in refresh.processes] == [8]
    assert refresh.processes[0].delta_ns == 50_000_010
    assert cpu_time(61_230_000_000) == "1:01.23"


@pytest.mark.root
@pytest.mark.parametrize("args, status, message", [
    (["-p", "999999999"], 1, "no process with pid 999999999"),
    (["-d", "0"], 2, "Invalid value for '-d'"),
    (["-s", "mem"], 2, "Invalid value for '-s'"),
])
def test_bad_input_is_one_line(args, status, message):
    res = pytracekit("top", "-b", "-n", "1", *args)
    assert res.returncode == status, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_not_root_is_one_line():
    res = as_nobody("top", "-b", "-n", "1")
    assert res.returncode == 1 and "needs root" in res.stderr
    assert res.stderr.count("\n") == 1


@pytest.mark.root
def test_interval_is_the_delay_like_every_tool():
    res = pytracekit("top", "-b", "-n", "1", "--interval", "0.3")
    assert res.returncode == 0, res.stderr
    assert re.match(r"^top - \d\d:\d\d:\d\d  \d+ CPUs  interval 0\.3\d s  busy ", res.stdout)

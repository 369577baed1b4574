"""execsnoop against the workload's `exec N ARG`: exactly N execs of the marker
child, with the parent's pid and the arguments."""
import os
import subprocess

import pytest

from conftest import Tool, pytracekit
from snoop_helpers import one_line_error, summary, validated_json

N = 5


def _marker(name: str) -> str:
    return f"mark-{name}-{os.getpid()}"


@pytest.mark.root
def test_exactly_n_execs_of_the_marker_child_with_parent_and_args(workload):
    marker = _marker("text")
    with Tool("execsnoop") as tool:
        parent = subprocess.Popen([workload, "exec", str(N), marker])
        parent.wait()
        out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PCOMM", "PID", "PPID", "RET", "ARGS"]
    children = [line.split() for line in lines[1:]
                if line.endswith(f"/proc/self/exe child {marker}")]
    assert len(children) == N
    assert {tuple(c[0:1] + c[2:4]) for c in children} == {("exe", str(parent.pid), "0")}
    assert len({c[1] for c in children}) == N          # N distinct child pids
    assert summary(err)["lost"] == 0


@pytest.mark.root
def test_json_has_args_list_and_validates(workload):
    marker = _marker("json")
    res = pytracekit("execsnoop", "--json", "--", workload, "exec", "3", marker)
    assert res.returncode == 0, res.stderr
    objects = validated_json("execsnoop", res.stdout)
    events = [o for o in objects if o["type"] == "event"]
    parent = [e for e in events if e["args"] == ["exec", "3", marker]]
    children = [e for e in events if e["args"] == ["child", marker]]
    assert len(parent) == 1 and len(children) == 3
    assert {(c["ppid"], c["filename"], c["ret"]) for c in children} == \
        {(parent[0]["pid"], "/proc/self/exe", 0)}
    assert objects[-1] == {"type": "loss", "lost_events": 0, "stack_errors": 0, "map_full": 0,
                           "unknown_frames": 0, "unreadable_strings": 0,
                           "unwind_fallback": 0, "unwind_fp_steps": 0, "unwind_incomplete": 0,
                           "missed_events": 0, "captured": len(events),
                           "printed": len(events), "unread": 0}


@pytest.mark.root
def test_failed_execs_quote_and_max_args(tmp_path):
    missing = str(tmp_path / "no-such-program")
    script = f'{missing} "a b" c d 2>/dev/null; true'
    res = pytracekit("execsnoop", "-x", "-q", "--max-args", "2", "-U", "-t",
                     "--", "sh", "-c", script)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "UID", "PCOMM", "PID", "PPID", "RET", "ARGS"]
    failed = [line for line in lines if f'"{missing}"' in line]
    assert len(failed) == 1
    assert failed[0].split()[1] == "0" and failed[0].split()[5] == "-2"   # uid 0, ENOENT
    assert failed[0].endswith(f'"{missing}" "a b" "c" ...')


@pytest.mark.root
def test_name_and_line_regex_filters(workload):
    marker = _marker("filter")
    with Tool("execsnoop", "-n", "^ex", "-l", marker) as tool:
        subprocess.run([workload, "exec", "2", marker], check=True)
        subprocess.run(["true", marker], check=True)
        out, err = tool.stop()
    rows = out.splitlines()[1:]
    assert len(rows) == 2 and all(r.startswith("exe ") for r in rows)
    assert summary(err)["captured"] >= 4          # captured in the kernel, filtered here


@pytest.mark.root
def test_parent_and_uid_filters_run_in_the_kernel(workload):
    marker = _marker("ppid")
    parent = subprocess.Popen([workload, "--go-file", f"/tmp/{marker}.go", "exec", "3", marker])
    try:
        with Tool("execsnoop", "-P", str(parent.pid), "-u", "0", "--json") as tool:
            open(f"/tmp/{marker}.go", "w").close()
            parent.wait()
            subprocess.run(["true", marker], check=True)      # another parent: not shown
            out, err = tool.stop()
    finally:
        os.unlink(f"/tmp/{marker}.go")
    events = [o for o in validated_json("execsnoop", out) if o["type"] == "event"]
    assert [(e["ppid"], e["args"]) for e in events] == [(parent.pid, ["child", marker])] * 3


def test_bad_regex_is_a_usage_error():
    res = pytracekit("execsnoop", "-n", "(", "-d", "0.1")
    assert res.returncode == 2
    assert "bad regular expression '('" in one_line_error(res.stderr, "execsnoop")


@pytest.mark.root
def test_script_shows_the_argv_it_was_given(tmp_path):
    """A script's new image holds the interpreter's argv (`/bin/sh -e ./s.sh a
    b`); execsnoop shows what was executed, as BCC does: `./s.sh a b`."""
    script = tmp_path / "s.sh"
    script.write_text("#!/bin/sh -e\ntrue\n")
    script.chmod(0o755)
    res = pytracekit("execsnoop", "--", "sh", "-c", f"cd {tmp_path} && ./s.sh a b")
    assert res.returncode == 0, res.stderr
    rows = [line.split(None, 4) for line in res.stdout.splitlines()[1:]]
    ran = [r for r in rows if r[0] == "s.sh"]
    assert [(r[3], r[4]) for r in ran] == [("0", "./s.sh a b")]
    res = pytracekit("execsnoop", "--json", "--", "sh", "-c", f"cd {tmp_path} && ./s.sh a b")
    events = [o for o in validated_json("execsnoop", res.stdout) if o.get("comm") == "s.sh"]
    assert [(e["filename"], e["args"], e["truncated"]) for e in events] == \
        [("./s.sh", ["a", "b"], False)]


@pytest.mark.root
def test_exec_from_a_non_leader_thread(workload):
    """The exec returns in the leader's pid; the arguments kept by the
    exec'ing thread are still found (through sched_process_exec's old_pid)."""
    marker = _marker("thread")
    res = pytracekit("execsnoop", "--json", "--", workload, "threadexec", marker)
    assert res.returncode == 0, res.stderr
    events = [o for o in validated_json("execsnoop", res.stdout) if o["type"] == "event"]
    child = [e for e in events if e["args"] == ["child", marker]]
    parent = [e for e in events if e["args"] == ["threadexec", marker]]
    assert len(child) == 1 and len(parent) == 1
    assert child[0]["pid"] == parent[0]["pid"] and child[0]["filename"] == "/proc/self/exe"



@pytest.mark.root
def test_failed_exec_with_an_unreadable_argument(workload, tmp_path):
    """A failed exec whose argument lies in a page the kernel never touched
    (it failed before copying arguments): [unreadable] (JSON null), counted."""
    target = str(tmp_path / "target")
    res = pytracekit("execsnoop", "-x", "--", workload, "unreadable", "3", target)
    assert res.returncode == 0, res.stderr
    failed = [line.split(None, 4) for line in res.stdout.splitlines()[1:]
              if line.split()[3:4] == ["-13"]]
    assert [f[4] for f in failed] == [f"{target} [unreadable]"] * 3
    assert "3 strings unreadable" in res.stderr
    res = pytracekit("execsnoop", "-x", "--json", "--", workload, "unreadable", "2", target)
    objects = validated_json("execsnoop", res.stdout)
    events = [o for o in objects if o["type"] == "event" and o["ret"] == -13]
    assert [(e["filename"], e["args"]) for e in events] == [(target, [None])] * 2
    assert objects[-1]["unreadable_strings"] == 2

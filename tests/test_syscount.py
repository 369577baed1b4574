"""syscount: exact per-syscall and per-process counts, errors, latency, the table."""
import os
import re

import pytest

from conftest import Tool, pytracekit, pytracekit_probes_left
from whohelpers import GatedWorkload, as_nobody, validate_json_lines

from pytracekit.kernel import syscalls
from pytracekit.tools.syscount import Row, table


def _rows(out):
    objs = validate_json_lines("syscount", out)
    return [o for o in objs if o["type"] == "syscalls"][-1]["rows"]


def _traced_pid(workload, tmp_path, *tool_args, mode=("open",), n="5", path=None):
    path = path or str(tmp_path / "marker")
    with GatedWorkload(workload, tmp_path, *mode, path, n) as w:
        tool = Tool("syscount", "-p", str(w.pid), "--json", *tool_args).start()
        assert w.release() == 0
        out, err = tool.stop()
    assert tool.returncode == 0, err
    return _rows(out)


@pytest.mark.root
def test_pid_counts_openat_exactly(workload, tmp_path):
    rows = {r["syscall"]: r for r in _traced_pid(workload, tmp_path, "-T", "50")}
    assert rows["openat"]["count"] == 5
    assert rows["openat"]["nr"] == 257
    assert rows["close"]["count"] == 5
    assert "exit_group" not in rows        # never returns, so never counted (as BCC)
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_failures_and_errno_filter(workload, tmp_path):
    """Only failed calls: the N opens of a missing file (and the go-file poll's
    access() calls that fail with ENOENT until the test creates it)."""
    missing = "/nonexistent-dir/marker"
    rows = dict((r["syscall"], r["count"]) for r in
                _traced_pid(workload, tmp_path, "-x", path=missing, n="4"))
    assert rows.pop("openat") == 4 and set(rows) <= {"access"}
    rows = dict((r["syscall"], r["count"]) for r in
                _traced_pid(workload, tmp_path, "-e", "ENOENT", path=missing, n="3"))
    assert rows.pop("openat") == 3 and set(rows) <= {"access"}
    rows = _traced_pid(workload, tmp_path, "-e", "EACCES", path=missing, n="3")
    assert rows == []


@pytest.mark.root
def test_latency_and_by_process(workload, tmp_path):
    with GatedWorkload(workload, tmp_path, "sleep", "3", "50") as w:
        tool = Tool("syscount", "-p", str(w.pid), "-L", "--json").start()
        assert w.release() == 0
        out, err = tool.stop()
    rows = {r["syscall"]: r for r in _rows(out)}
    # 3 sleeps of 50 ms, plus the go-file poll's 2 ms usleep()s still running after attach
    assert rows["clock_nanosleep"]["count"] >= 3
    assert 150e6 <= rows["clock_nanosleep"]["total_ns"] < 1e9
    with GatedWorkload(workload, tmp_path, "open", str(tmp_path / "m"), "4") as w:
        tool = Tool("syscount", "-p", str(w.pid), "-P", "--syscall", "openat").start()
        assert w.release() == 0
        out, err = tool.stop()
    assert re.search(rf"^{w.pid:<6d} workload\s+4$", out, re.M), out


@pytest.mark.root
def test_command_and_text_layout(workload, tmp_path):
    res = pytracekit("syscount", "-T", "3", "--", workload, "open", str(tmp_path / "m"), "9")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().splitlines()
    assert re.match(r"^\[\d\d:\d\d:\d\d\]$", lines[0])
    assert lines[1].split() == ["SYSCALL", "COUNT"]
    counts = dict(line.split() for line in lines[2:])
    assert len(counts) == 3
    assert int(counts["openat"]) >= 9


@pytest.mark.root
def test_interval_clears_between_prints(workload, tmp_path):
    # two opens 600 ms apart, then 600 ms more: alive for several intervals
    with GatedWorkload(workload, tmp_path, "openpaced", str(tmp_path / "m"), "2", "600") as w:
        tool = Tool("syscount", "-p", str(w.pid), "-i", "0.3", "--json").start()
        assert w.release() == 0
        out, _ = tool.wait()   # -p: the run ends with the process
    objs = [o for o in validate_json_lines("syscount", out) if o["type"] == "syscalls"]
    assert len(objs) >= 3
    total = sum(r["count"] for o in objs for r in o["rows"] if r["syscall"] == "openat")
    assert total == 2          # each interval reports only its own calls


def test_table_renders_like_bcc():
    rows = [Row(("read", 0), 10, 5000), Row(("openat", 257), 30, 1000)]
    text = table(rows, by_process=False, latency=True, milliseconds=False, top=10)
    assert text.splitlines() == ["SYSCALL                   COUNT        TIME (us)",
                                 "read                         10            5.000",
                                 "openat                       30            1.000"]
    text = table([Row((42, "bash"), 3, 0)], by_process=True, latency=False,
                 milliseconds=False, top=10)
    assert text.splitlines()[1] == "42     bash                   3"


def test_syscall_table_names_match_this_kernel():
    """Every syscalls:sys_enter_* event names a call in the table (names, not numbers)."""
    events = "/sys/kernel/tracing/events/syscalls"
    if not os.access(events, os.R_OK):
        pytest.skip("tracefs not readable (needs root)")
    names = {syscalls.event_name(n) for n in syscalls.table().values()}
    on_kernel = {e[len("sys_enter_"):] for e in os.listdir(events) if e.startswith("sys_enter_")}
    assert on_kernel <= names, on_kernel - names


@pytest.mark.root
def test_syscall_numbers_match_what_the_kernel_reports(tmp_path):
    """The tracepoints' own __syscall_nr field against the table, for calls we make."""
    from pytracekit.engine.loader import Program
    src = ('#include "vmlinux.h"\nBPF_HASH(seen, u32, u32, 64);\n'
           'int on(void *ctx) { u32 nr = *(int *)(ctx + 8), one = 1; seen.update(&nr, &one);'
           ' return 1; }\n')   # 1: let perf users of the tracepoint see it
    calls = ["openat", "newfstatat", "newuname", "getppid", "close"]
    with Program.from_text("nrcheck", src) as prog:
        for event in calls:
            prog.attach_tracepoint("syscalls", f"sys_enter_{event}", "on")
        fd = os.open(str(tmp_path / "f"), os.O_CREAT | os.O_RDONLY)
        os.fstat(fd)
        os.uname()
        os.getppid()
        os.close(fd)
        seen = {k.value for k in prog["seen"].keys()}
    assert {syscalls.name(nr) for nr in seen} == {"openat", "newfstatat", "uname", "getppid",
                                                  "close"}


@pytest.mark.root
@pytest.mark.parametrize("args, status, message", [
    (["-p", "999999999"], 1, "no process with pid 999999999"),
    (["-e", "ENOTANERRNO"], 2, "unknown errno 'ENOTANERRNO'"),
    (["--syscall", "opne"], 1, "unknown system call 'opne'"),
    (["-T", "0"], 2, "Invalid value for '-T'"),
])
def test_bad_input_is_one_line(args, status, message):
    res = pytracekit("syscount", "-d", "0", *args)
    assert res.returncode == status, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_not_root_is_one_line():
    res = as_nobody("syscount", "-d", "0")
    assert res.returncode == 1 and "needs root" in res.stderr
    assert res.stderr.count("\n") == 1


def _strace_counts(*command: str) -> dict[str, int]:
    """`strace -f -c`'s calls column per syscall: the oracle."""
    import subprocess
    res = subprocess.run(["strace", "-f", "-c", "-o", "/dev/stderr", *command],
                         capture_output=True, text=True, timeout=60, check=True)
    counts = {}
    for line in res.stderr.splitlines():
        cols = line.split()     # % time, seconds, usecs/call, calls, [errors], syscall
        if len(cols) >= 5 and cols[3].isdigit() and cols[-1] != "total":
            counts[cols[-1]] = int(cols[3])
    return counts


def _command_rows(*args: str) -> dict[str, dict]:
    res = pytracekit("syscount", "--json", "-T", "500", *args)
    assert res.returncode == 0, res.stderr
    ours = "\n".join(line for line in res.stdout.splitlines()
                     if not line.startswith("worker_tid="))   # the workload's own line
    return {r["syscall"]: r for r in _rows(ours)}


@pytest.mark.root
@pytest.mark.parametrize("latency", [False, True])
def test_rt_sigreturn_named_and_counted_like_strace(workload, latency):
    """4N handled signals return through rt_sigreturn, whose sys_exit carries
    id -1 on x86: counted by name, as strace counts it."""
    n = 7
    rows = _command_rows(*(["-L"] if latency else []), "--", workload, "signals", str(n))
    oracle = _strace_counts(workload, "signals", str(n))
    assert oracle["rt_sigreturn"] == 4 * n
    assert rows["rt_sigreturn"]["count"] == 4 * n
    assert rows["rt_sigreturn"]["nr"] == syscalls.number("rt_sigreturn")
    for name in ("kill", "tkill", "tgkill"):
        assert rows[name]["count"] == oracle[name], name
    assert not [name for name in rows if name.startswith("syscall_")]
    if latency:
        assert rows["rt_sigreturn"]["total_ns"] > 0


@pytest.mark.root
@pytest.mark.parametrize("mode", [("exec", "4"), ("threadexec",)])
def test_latency_times_every_execve(workload, mode):
    """-L counts the command's own exec (entered before the command is
    followed), its children's, and one made by a non-leader thread (it
    returns under the leader's pid), as strace counts them."""
    rows = _command_rows("-L", "--", workload, *mode)
    oracle = _strace_counts(workload, *mode)
    assert rows["execve"]["count"] == oracle["execve"] == (5 if mode[0] == "exec" else 2)
    per_call = rows["execve"]["total_ns"] / rows["execve"]["count"]
    assert 5_000 < per_call < 2e9      # an exec takes tens of microseconds, not 0
    assert _command_rows("--", workload, *mode)["execve"]["count"] == oracle["execve"]

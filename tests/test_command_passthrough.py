"""`-- COMMAND` runs exactly as it would without pytracekit: the same stdin,
stdout, stderr, environment, working directory, open files and signal
dispositions, and nothing pytracekit does is counted as the command's (the
counts equal `perf stat -- COMMAND`'s). A held command never runs untraced:
when the tool dies or gives up before attaching, the command does not run.
"""
import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Callable

import pytest

from conftest import ROOT, pytracekit, pytracekit_probes_left, wait_until

SYSCALLS = ("openat", "read", "close")
# Run from another directory, the tool must still be this checkout's.
HERE = {"PYTHONPATH": str(ROOT)}


def perf_counts(command: list[str], cwd, syscalls=SYSCALLS, kind="enter") -> dict[str, int]:
    """perf stat's count of each syscall's entry while the command runs.

    Every command here opens, reads and closes something (its dynamic loader
    does). A zero means another tracer on this shared machine has a program on
    that tracepoint that drops the event for perf (issue 11): ask again."""
    prefix = f"syscalls:sys_{kind}_"
    events = ",".join(prefix + name for name in syscalls)
    for _attempt in range(20):
        res = subprocess.run(["perf", "stat", "-x,", "-e", events, "--", *command],
                             capture_output=True, text=True, cwd=cwd, timeout=60)
        assert res.returncode == 0, res.stderr
        counts = {}
        for line in res.stderr.splitlines():
            fields = line.split(",")
            if len(fields) > 2 and fields[2].startswith(prefix):
                counts[fields[2].removeprefix(prefix)] = int(fields[0])
        assert set(counts) == set(syscalls), res.stderr
        if all(counts.values()):
            return counts
        time.sleep(1)
    pytest.skip(f"perf stat keeps counting 0 ({counts}): another tracer drops these events")


def _funccount(out: str) -> dict[str, int]:
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].startswith("syscalls:sys_enter_"):
            counts[parts[0].removeprefix("syscalls:sys_enter_")] = int(parts[1])
    return counts


def _stat(out: str) -> dict[str, int]:
    counts = {}
    for line in out.splitlines():
        obj = json.loads(line)
        if obj.get("type") == "counter":
            counts[obj["event"].removeprefix("syscalls:sys_enter_")] = obj["value"]
    return counts


def _syscount(out: str) -> dict[str, int]:
    counts = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def _trace(out: str) -> dict[str, int]:
    counts = dict.fromkeys(SYSCALLS, 0)
    for line in out.splitlines()[1:]:
        name = line.split()[-1].removeprefix("sys_enter_")
        counts[name] += 1
    return counts


COUNTING = {
    "funccount": (["-r", r"t:syscalls:sys_enter_(openat|read|close)$"], _funccount),
    "stat": (["--json", "-e", ",".join(f"syscalls:sys_enter_{n}" for n in SYSCALLS)], _stat),
    "syscount": (["-T", "500"], _syscount),
    "trace": ([f"t:syscalls:sys_enter_{n}" for n in SYSCALLS], _trace),
}


@pytest.mark.root
@pytest.mark.parametrize("tool", sorted(COUNTING))
def test_counts_equal_perf_stat_of_the_same_command(tool, workload, tmp_path):
    """The workload's own opens, reads and closes (the dynamic loader's too),
    none of the launcher's: before the fix the child's open of /dev/null was
    counted, one openat more than perf."""
    command = [workload, "open", str(tmp_path / "f"), "4"]
    expected = perf_counts(command, tmp_path)
    args, parse = COUNTING[tool]
    res = pytracekit(tool, *args, "--", *command, cwd=tmp_path, env=HERE)
    assert res.returncode == 0, res.stderr
    counts = parse(res.stdout)
    assert {name: counts.get(name, 0) for name in SYSCALLS} == expected, res.stdout


@pytest.mark.root
def test_the_launchers_path_to_exec_is_not_counted(workload, tmp_path):
    """The held child returns from its read of the go-pipe and calls execve
    after the probes are attached: like perf (enable_on_exec), counting starts
    at the exec, so neither is the command's. FILTER_PID tools (funccount)
    get this from FILTER_AFTER_EXEC, follow tools (syscount) from ptk_follow.h."""
    command = [workload, "open", str(tmp_path / "f"), "2"]
    expected = perf_counts(command, tmp_path, ("read", "execve"), "exit")
    assert expected == {"read": 1, "execve": 1}
    res = pytracekit("funccount", "-r", r"t:syscalls:sys_exit_(read|execve)$", "--", *command,
                     cwd=tmp_path, env=HERE)
    assert res.returncode == 0, res.stderr
    counts = _funccount(res.stdout.replace("sys_exit_", "sys_enter_"))
    assert counts == expected, res.stdout


@pytest.mark.root
def test_opensnoop_sees_exactly_the_commands_opens(workload, tmp_path):
    command = [workload, "open", str(tmp_path / "f"), "3"]
    expected = perf_counts(command, tmp_path)["openat"]
    res = pytracekit("opensnoop", "--", *command, cwd=tmp_path, env=HERE)
    assert res.returncode == 0, res.stderr
    rows = [line for line in res.stdout.splitlines()[1:] if line.strip()]
    assert len(rows) == expected, res.stdout
    assert not any("/dev/null" in row for row in rows)


@pytest.mark.root
def test_stdin_from_a_file_reaches_the_command(tmp_path):
    data = tmp_path / "lines"
    data.write_text("".join(f"{i}\n" for i in range(7)))
    with open(data) as stdin:
        res = subprocess.run([sys.executable, "-m", "pytracekit", "stat", "-e",
                              "syscalls:sys_enter_read", "--", "wc", "-l"], stdin=stdin,
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "7", res.stdout


@pytest.mark.root
def test_stdin_from_a_pipe_reaches_the_command():
    """No tty: the command reads what is written into the pipe, to its end."""
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", "funccount",
                             "t:syscalls:sys_enter_read", "--", "wc", "-c"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out, err = proc.communicate("x" * 100_000, timeout=60)
    assert proc.returncode == 0, err
    assert out.splitlines()[0] == "100000", out


@pytest.mark.root
def test_stdout_and_stderr_are_the_commands(tmp_path):
    res = pytracekit("syscount", "--", "sh", "-c", "echo to-stdout; echo to-stderr >&2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "to-stdout"
    assert "to-stderr" in res.stderr.splitlines()
    assert "to-stderr" not in res.stdout


@pytest.mark.root
def test_a_terminal_stays_the_commands_terminal():
    """On a pty: the command's stdin, stdout and stderr are that terminal."""
    master, slave = pty.openpty()
    name = os.ttyname(slave)
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", "stat", "-e",
                             "syscalls:sys_enter_read", "--", "sh", "-c",
                             "tty; test -t 1 && test -t 2 && echo all-three-ttys"],
                            stdin=slave, stdout=slave, stderr=slave, cwd=ROOT)
    os.close(slave)
    text = b""
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        try:
            chunk = os.read(master, 4096) if ready else b""
        except OSError:   # EIO: the last writer closed the pty
            chunk = b""
        if not chunk:
            break
        text += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 0, text
    lines = text.decode().replace("\r", "").splitlines()
    assert name in lines and "all-three-ttys" in lines, lines


@pytest.mark.root
def test_environment_working_directory_and_files_are_a_plain_runs(tmp_path):
    """Compared with the same commands run directly, under a test harness that
    gives the tool PYTRACEKIT_READY_FD (which the command must not see, nor
    that fd) and a BCC_KERNEL_SOURCE of the user's own."""
    env = {**os.environ, **HERE, "BCC_KERNEL_SOURCE": "/users/own/tree",
           "PTK_PASSTHROUGH": "yes"}
    script = "env; echo cwd=$(pwd); ls /proc/$$/fd"
    plain = subprocess.run(["sh", "-c", script], capture_output=True, text=True,
                           cwd=tmp_path, env=env, check=True).stdout
    with _started_with_ready_pipe(["systrace", "-e", "getpid", "--json", "--", "sh", "-c",
                                   script], cwd=tmp_path, env=env) as (proc, ready_r):
        assert select.select([ready_r], [], [], 60)[0] and os.read(ready_r, 16)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    traced = [line for line in out.splitlines() if not line.startswith("{")]
    assert f"cwd={tmp_path}" in traced
    assert sorted(traced) == sorted(plain.splitlines())


@pytest.mark.root
def test_a_script_without_interpreter_line_runs_through_sh(tmp_path):
    """As a shell runs it (and execvp did): exec fails with ENOEXEC, sh runs it."""
    script = tmp_path / "plain-script"
    script.write_text('echo "script ran with $1"\n')
    script.chmod(0o755)
    res = pytracekit("syscount", "--", str(script), "arg1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "script ran with arg1"


@pytest.mark.root
def test_sigpipe_is_not_ignored_in_the_command():
    """Python ignores SIGPIPE; a command must get the default back, so `yes |
    head -1` ends quietly instead of `yes` failing on a broken pipe."""
    res = pytracekit("syscount", "--", "sh", "-c", "yes | head -1")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0] == "y"
    assert "Broken pipe" not in res.stderr, res.stderr


@pytest.mark.root
@pytest.mark.parametrize("caller_ignores_sigint", [False, True])
def test_signal_dispositions_are_a_plain_runs(caller_ignores_sigint):
    """Ignored and blocked signals as in a plain run: Python's ignored SIGPIPE
    is not passed on, a SIGINT the caller ignores (a background job, nohup)
    stays ignored."""
    def preexec():
        if caller_ignores_sigint:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    command = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]
    plain = subprocess.run(command, capture_output=True, text=True, check=True,
                           preexec_fn=preexec).stdout
    traced = subprocess.run([sys.executable, "-m", "pytracekit", "syscount", "--", *command],
                            capture_output=True, text=True, cwd=ROOT, timeout=60,
                            preexec_fn=preexec)
    assert traced.returncode == 0, traced.stderr
    assert traced.stdout.startswith(plain), (plain, traced.stdout)


# -- a held command never runs untraced ---------------------------------------

def _held_child(tool_pid: int, timeout: float = 30) -> int:
    """The command the tool forked and holds (waiting for the go)."""
    children = f"/proc/{tool_pid}/task/{tool_pid}/children"

    def found() -> bool:
        try:
            return bool(open(children).read().split())
        except OSError:
            return False
    assert wait_until(found, timeout=timeout), "the tool never forked its command"
    return int(open(children).read().split()[0])


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (reparented to init, not yet reaped) has exited too
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.root
def test_a_killed_tool_does_not_run_its_command(tmp_path):
    marker = tmp_path / "ran"
    # compiled, not loaded from the program cache: the command is held for the
    # whole compile, so the kill surely comes while it is held (from the cache
    # the tool can attach and release it before this test sees the child)
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", "funccount", "c:malloc",
                             "--", "touch", str(marker)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTRACEKIT_NO_PROGRAM_CACHE": "1"})
    child = _held_child(proc.pid)
    proc.kill()
    proc.wait(timeout=30)
    assert wait_until(lambda: _gone(child), timeout=10), "the held command lingers"
    time.sleep(0.2)
    assert not marker.exists(), "the command ran untraced"


@pytest.mark.root
def test_a_program_that_fails_to_compile_does_not_run_the_command(tmp_path):
    """The command is forked before compiling (its pid goes into the program):
    a compile error must end it unrun."""
    bpf = tmp_path / "bpf"
    shutil.copytree(ROOT / "bpf", bpf)
    (bpf / "funccount.bpf.c").write_text("this is not C;\n")
    marker = tmp_path / "ran"
    res = pytracekit("funccount", "c:malloc", "--", "touch", str(marker),
                     env={"PYTRACEKIT_BPF_DIR": str(bpf)})
    assert res.returncode == 1, res.stderr
    assert "error" in res.stderr and "Traceback" not in res.stderr, res.stderr
    time.sleep(0.3)
    assert not marker.exists(), "the command ran untraced"


def _stop_signals(ignored: tuple[int, ...]) -> Callable[[], None]:
    def set_in_child() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    return set_in_child


@contextlib.contextmanager
def _started_with_ready_pipe(args: list[str], cwd=ROOT, env=None, ignored=()):
    """Start the tool as conftest.Tool does (it says "ready" on a pipe once
    attached), without waiting for it: (its process, the pipe's read end); its
    stop signals as a shell gives them (`ignored`: as nohup leaves SIGHUP), not
    as the suite got them (`nohup make test` ignores SIGHUP). On the way out
    the pipe is closed and the tool never left running after a failure."""
    ready_r, ready_w = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**(env or os.environ), "PYTRACEKIT_READY_FD": str(ready_w)},
                            pass_fds=(ready_w,), preexec_fn=_stop_signals(ignored))
    os.close(ready_w)
    try:
        yield proc, ready_r
    finally:
        os.close(ready_r)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.root
def test_a_hangup_the_caller_ignored_is_ignored_throughout():
    """`nohup pytracekit ...`: a SIGHUP neither ends the run during start-up nor
    once tracing (as for perf and BCC's tools); Ctrl-C still ends it with its
    results. Before, the imports ignored it and the run's handlers did not."""
    with _started_with_ready_pipe(["trace", "r:c:malloc", "--", "sh", "-c", "exec sleep 60"],
                                  ignored=(signal.SIGHUP,)) as (proc, ready_r):
        proc.send_signal(signal.SIGHUP)   # during start-up
        assert select.select([ready_r], [], [], 90)[0] and os.read(ready_r, 16), \
            proc.communicate(timeout=5)
        proc.send_signal(signal.SIGHUP)   # tracing
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert pytracekit_probes_left() == []


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_a_signal_during_start_up_ends_quietly(sig, delay, tmp_path):
    """Before the probes are attached (imports, compiling, attaching a uprobe):
    no traceback, status 128+signal, nothing left in tracefs, and the command
    never ran. If the tool was already tracing, the signal ends the run as
    Ctrl-C always does. Never lost: the command would run for a minute, the
    tool ends well before."""
    marker = tmp_path / "ran"
    with _started_with_ready_pipe(["trace", "r:c:malloc", "--", "sh", "-c",
                                   f"touch {marker}; exec sleep 60"]) as (proc, ready_r):
        time.sleep(delay)
        proc.send_signal(sig)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=90)
        ended_after = time.monotonic() - sent
        was_ready = bool(select.select([ready_r], [], [], 0)[0] and os.read(ready_r, 16))
    assert pytracekit_probes_left() == []
    assert ended_after < 40, f"the signal was lost: the run ended with its command ({err})"
    if "Traceback" in err and f'File "{ROOT / "pytracekit"}' not in err:
        # SIGINT while the interpreter itself starts (site, the venv's .pth
        # files; measured up to ~40 ms), before any pytracekit code runs:
        # Python reports it as for any program. The command never ran.
        assert sig == signal.SIGINT and err.rstrip().endswith("KeyboardInterrupt"), err
        assert proc.returncode in (1, -sig, 128 + sig), (proc.returncode, err)
        assert out == "" and not was_ready
        time.sleep(0.2)
        assert not marker.exists(), "the command ran untraced"
        return
    assert "Traceback" not in err and "internal error" not in err, err
    if was_ready:   # the machine was quick: it was tracing already
        assert proc.returncode == 0, err
    else:
        # -sig: the signal came before the interpreter had set up its handlers
        # (a loaded machine), so it ended the process as it ends any other
        assert proc.returncode in (128 + sig, -sig), (proc.returncode, err)
        assert out == ""
        time.sleep(0.2)
        assert not marker.exists(), "the command ran untraced"


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_compiling_ends_the_run_at_once(sig, tmp_path):
    """clang compiling cannot run Python's handler until it returns; here it
    never returns by itself: a header of the private include tree is a FIFO
    it blocks reading. The signal still ends the run at once: status
    128+signal, nothing printed, nothing left in tracefs, the command never
    ran (runner.stops_end_at_once)."""
    from blocked_compile import compiling, fifo_header
    cache = tmp_path / "cache"
    header = fifo_header(cache)
    marker = tmp_path / "ran"
    writer = -1
    try:
        with _started_with_ready_pipe(
                ["trace", "r:c:malloc", "--", "touch", str(marker)],
                env={**os.environ, "PYTRACEKIT_CACHE": str(cache),
                     "PYTRACEKIT_NO_PROGRAM_CACHE": "1"}) as (proc, ready_r):
            writer = compiling(header, proc)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)   # without the fix: forever
            was_ready = bool(select.select([ready_r], [], [], 0)[0] and os.read(ready_r, 16))
    finally:
        if writer >= 0:
            os.close(writer)
    assert (proc.returncode, out, err, was_ready) == (128 + sig, "", "", False)
    assert pytracekit_probes_left() == []
    time.sleep(0.2)
    assert not marker.exists(), "the command ran"


@pytest.mark.root
def test_a_ctrl_c_inside_the_first_header_builds_btf_dump_is_not_lost(tmp_path, monkeypatch):
    """The first run on a kernel builds the include tree: libbpf's btf_dump
    calls back into Python per line, and a KeyboardInterrupt raised in a
    ctypes callback is printed and dropped. Held until the call returns
    (runner.signals_held), it stops the compile. Here the Ctrl-C lands in
    the first callback (sent from it)."""
    from pytracekit.engine.loader import Program
    from pytracekit.kernel import btf
    monkeypatch.setenv("PYTRACEKIT_CACHE", str(tmp_path / "cache"))   # a first build
    btf._libs()                       # its argument types name the real callback type
    real = btf._PRINTF
    sent = []

    def printf_sending_ctrl_c(fn):
        def callback(*args):
            if not sent:
                sent.append(True)
                os.kill(os.getpid(), signal.SIGINT)   # handled at the next bytecode: here
            return fn(*args)
        return real(callback)
    monkeypatch.setattr(btf, "_PRINTF", printf_sending_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        Program.from_text("first", '#include "vmlinux.h"\n'
                          "TRACEPOINT_PROBE(sched, sched_switch) { return 0; }\n")
    assert sent == [True]


@pytest.mark.root
def test_top_leaves_the_terminals_input_to_its_command(tmp_path):
    """Interactive top with -- COMMAND reads no keys: what is typed is the
    command's (here a line it reads), and top ends when the command exits."""
    if not shutil.which("tmux"):
        pytest.skip("tmux is not installed (deps/apt/top.txt)")
    got = tmp_path / "got"
    name = f"ptk-top-cmd-{os.getpid()}"
    script = f"read line; echo \"$line\" > {got}"
    cmd = f"cd {ROOT} && {sys.executable} -m pytracekit top -d 0.3 -- sh -c '{script}'"
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "100", "-y", "30", cmd],
                   check=True)

    def pane() -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                              text=True).stdout

    def gone() -> bool:
        return subprocess.run(["tmux", "has-session", "-t", name],
                              capture_output=True).returncode != 0
    try:
        assert wait_until(lambda: "%CPU" in pane(), timeout=30), pane()
        # N and q are top's keys (sort by pid, quit): here they are the command's
        subprocess.run(["tmux", "send-keys", "-t", name, "Nq typed", "Enter"], check=True)
        assert wait_until(gone, timeout=10), pane()
        assert got.read_text() == "Nq typed\n"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)

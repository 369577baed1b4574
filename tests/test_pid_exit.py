"""With -p PID every tool ends by itself when that process exits (as perf
does), printing its results; with a pid list, when the last one exits. And
one rule for a bad -p everywhere: one line, status 2.

The tools are found from the click commands, so a new tool with -p is covered
here at once: it runs with the arguments in TOOL_ARGS (none by default)."""
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from conftest import Tool, pytracekit, pytracekit_in_process
from pytracekit.cli import command as cli

# What a tool needs besides -p to trace the workload's sleeps.
TOOL_ARGS = {
    "argdist": ["-C", "t:syscalls:sys_enter_nanosleep():u64:1"],
    "cprofile": ["--every", "1"],                 # --dir added per test
    "funccount": ["t:syscalls:sys_enter_clock_nanosleep"],
    "funclatency": ["c:clock_nanosleep"],
    "funcslower": ["-u", "0", "c:clock_nanosleep"],
    "funcinterval": ["t:syscalls:sys_enter_clock_nanosleep"],
    # 60 ms of CPU in 3 ms bursts: at the default 49 Hz a run could see no sample
    "profile": ["-F", "499"],
    "record": ["-F", "499"],                       # -o added per test
    "stackcount": ["t:syscalls:sys_enter_clock_nanosleep"],
    "stat": ["-e", "syscalls:sys_enter_clock_nanosleep"],
    "top": ["-b", "-d", "0.5"],
    "trace": ["t:syscalls:sys_enter_clock_nanosleep"],
}
# Tools with -p that do not trace: they end at once anyway.
NOT_TRACERS = {"list": "lists the probes of a process and exits"}
# Tools that print only their events, no header (as BCC's): none happen here.
NO_HEADER = {"oomkill": "tests/test_oomkill.py::test_the_kill_of_a_pid_ends_the_run"}
# Summaries with nothing to show when their events never happened (as libbpf-tools'):
# the workload does no block I/O.
EMPTY_WHEN_IDLE = {"biostacks": "tests/test_biostacks.py (a command's requests)"}
# Tools that trace only a Python process (the workload is C): their own tests check this.
NEEDS_PYTHON = {"ugc": "tests/test_ugc.py::test_ends_when_its_python_exits"}
# Tools that need many samples in one named function (cpuburst's are mostly in the
# vdso's clock_gettime): their own tests check this on a hot loop.
NEEDS_HOT_FUNCTION = {"annotate": "tests/test_annotate.py::test_live_pid_at_O0"}


def _tools_with_pid() -> list[str]:
    ctx = click.Context(cli.cli)
    found = []
    for name in cli.tool_names():
        command = cli.cli.get_command(ctx, name)
        if any("--pid" in getattr(p, "opts", ()) for p in command.params):
            found.append(name)
    return found


TOOLS_WITH_PID = _tools_with_pid()


def test_the_list_of_tools_is_found():
    assert {"funccount", "profile", "stat", "top", "trace", "record"} <= set(TOOLS_WITH_PID)


def _args(tool: str, tmp_path) -> list[str]:
    args = list(TOOL_ARGS.get(tool, []))
    if tool == "cprofile":
        args += ["--dir", str(tmp_path / "prof")]
    if tool == "record":
        args += ["-o", str(tmp_path / "rec.data")]
    if tool == "timechart":
        args += ["-o", str(tmp_path / "chart.svg")]
    return args


# Two tools' runs side by side: one compiles while the other traces and ends. Each
# tool's process is let go as soon as that tool is attached: a tool left attached
# meanwhile gathers more to print at the end (offwaketime's wakers).
SIDE_BY_SIDE = 2
TRACERS = [t for t in TOOLS_WITH_PID if t not in NOT_TRACERS and t not in NEEDS_PYTHON
           and t not in NEEDS_HOT_FUNCTION]


@dataclass
class Ended:
    """How a tool's -p run ended: its output, status and seconds after its process."""
    tmp: Path
    out: str = ""
    err: str = ""
    returncode: int | None = None
    took: float = 0.0
    failure: str = ""           # what went wrong before the checks (the test fails with it)
    error: BaseException | None = None   # its start failed


def _run_one(tool: str, workload: str, tmp: Path) -> Ended:
    r = Ended(tmp)
    go = tmp / "go"
    # sleeps and CPU time: something for every kind of tool to see; then 0.2 s
    # asleep (not cpuburst's 1 s: the tool already traces, -p read it at start)
    proc = subprocess.Popen([workload, "--go-file", str(go), "cpuburst", "20", "3000", "200"],
                            stdout=subprocess.DEVNULL)
    running = None
    try:
        running = Tool(tool, *_args(tool, tmp), "-p", str(proc.pid)).start(timeout=120)
        go.touch()
        status = proc.wait(timeout=30)
        if status != 0:
            r.failure = f"the workload exited with status {status}"
            return r
        gone = time.monotonic()
        try:
            r.out, r.err = running.wait(timeout=10)
        except subprocess.TimeoutExpired:
            r.failure = f"{tool} -p still running 10 s after its process exited"
            return r
        r.took, r.returncode = time.monotonic() - gone, running.returncode
    except BaseException as exc:   # its own test fails with it
        r.error = exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if running is not None:
            running.__exit__(None, None, None)
    return r


@pytest.fixture(scope="module")
def ended(workload, tmp_path_factory, request) -> dict[str, Ended]:
    """tool -> its Ended, for the tools whose test this session runs."""
    tools = [item.callspec.params["tool"] for item in request.session.items
             if item.originalname == "test_tool_ends_when_its_process_exits"]
    # the directories made here, not in the threads: a worker's first mktemp makes
    # its base directory, and two threads making it at once failed (FileExistsError,
    # once this module ran first on an xdist worker)
    dirs = [tmp_path_factory.mktemp(f"pid-exit-{tool}") for tool in tools]
    with ThreadPoolExecutor(SIDE_BY_SIDE) as pool:
        runs = pool.map(lambda run: _run_one(run[0], workload, run[1]), zip(tools, dirs))
        return dict(zip(tools, runs))


@pytest.mark.root
@pytest.mark.alone("every-tool")   # its batch compiles every tool two at a time: one batch at once (conftest)
@pytest.mark.parametrize("tool", TRACERS)
def test_tool_ends_when_its_process_exits(tool, ended):
    r = ended[tool]
    if r.error is not None:
        raise r.error
    if r.failure:
        pytest.fail(r.failure)
    out, err = r.out, r.err
    # within a few seconds: "within a second" plus a loaded machine's slack
    # (printing the results may symbolize stacks)
    assert r.took < 5, f"{tool} took {r.took:.1f} s"
    assert r.returncode == 0, (out, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if tool == "record":   # its results are the file
        report = pytracekit("report", str(r.tmp / "rec.data"))
        assert report.returncode == 0, report.stderr
        assert "busy_call" in report.stdout, report.stdout
    elif tool == "timechart":   # its results are the file: the process's one task
        assert (r.tmp / "chart.svg").read_bytes().count(b'data-kind="task"') == 1
    elif tool in NO_HEADER:
        assert out == "" and "0 events captured, 0 lost" in err, (out, err)
    elif tool in EMPTY_WHEN_IDLE:
        assert out == "", out
    else:
        assert out.strip(), f"{tool} printed no results"


@pytest.mark.root
def test_a_pid_list_ends_with_its_last_process(workload, tmp_path):
    go = tmp_path / "go"
    short = subprocess.Popen([workload, "--go-file", str(go), "sleep", "1", "10"])
    long = subprocess.Popen([workload, "--go-file", str(go), "sleep", "20", "100"])
    running = None
    try:
        running = Tool("profile", "-p", f"{short.pid},{long.pid}").start()
        go.touch()
        assert short.wait(timeout=30) == 0
        time.sleep(0.8)
        assert running.proc.poll() is None, "profile ended with the first of its processes"
        assert long.wait(timeout=30) == 0
        out, err = running.wait(timeout=10)
        assert running.returncode == 0, err
        assert "Traceback" not in err
    finally:
        for proc in (short, long):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if running is not None and running.proc.poll() is None:
            running.proc.kill()
            running.proc.communicate()


@pytest.mark.parametrize("bad", ["-5", "0", "abc", "1.5", ""])
@pytest.mark.parametrize("tool", ["funccount", "profile", "top", "stat", "cprofile"])
def test_a_bad_pid_is_one_line_and_status_2(tool, bad):
    res = pytracekit_in_process(tool, *TOOL_ARGS.get(tool, []), "-p", bad)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert f"'{bad}' is not a process id (give a positive number" in lines[0], lines[0]
    assert lines[0].startswith(f"pytracekit {tool}: error: ")


def test_stop_signals_are_ignored_once_a_run_ended(monkeypatch):
    """A Ctrl-C racing the process's exit (or a second press) must not cut
    the results short: once the pytracekit command's run ended, the tool
    prints, detaches and exits (conftest restores pytest's handlers)."""
    import signal
    from pytracekit.engine import runner
    monkeypatch.setattr(runner, "_claimed", True)
    assert runner.run_until_done(runner.Target(), duration=0) == "duration"
    assert [signal.getsignal(s) for s in runner.STOPS] == [signal.SIG_IGN] * 3

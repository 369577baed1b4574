"""Bad input to any tool: one clear line on stderr, exit 2 (usage) or 1 (runtime).

Every tool is covered: those with --pid get a pid that does not exist, those that
run a command get one that does not exist. A new tool is held to this as soon as it
is added; give it the arguments it needs to get that far in BASE_ARGS.
"""
import importlib

import click
import pytest

from pytracekit.cli import tool_names
from pytracekit.errors import EXIT_RUNTIME, EXIT_USAGE
from pytracekit.stacktools import CommandAfterDashes

from conftest import pytracekit

MISSING_PID = "999999"
MISSING_PROGRAM = "/nonexistent/pytracekit-no-such-program"
GETPID = "t:syscalls:sys_enter_getpid"

# What a tool needs besides -p/-- COMMAND before it looks at the pid or command.
BASE_ARGS = {
    "argdist": ["-C", "t:syscalls:sys_enter_getpid():int:args->__syscall_nr"],
    "cprofile": ["--dir", "/tmp/pytracekit-bad-input"],
    "funccount": [GETPID],
    "funclatency": ["c:getpid"],
    "list": ["c:*"],
    "record": ["-o", "/tmp/pytracekit-bad-input.ptk"],
    "stackcount": [GETPID],
    "stat": ["-e", "syscalls:sys_enter_getpid"],
    "top": ["-b", "-n", "1"],
    "trace": [GETPID],
}


def _command(name: str) -> click.Command:
    return importlib.import_module(f"pytracekit.tools.{name}").command


def _long_options(cmd: click.Command) -> set[str]:
    return {opt for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}


def takes_pid(name: str) -> bool:
    return "--pid" in _long_options(_command(name))


def takes_command(name: str) -> bool:
    cmd = _command(name)
    if isinstance(cmd, CommandAfterDashes):
        return True
    # `-- COMMAND` as a trailing nargs=-1 argument (trace's PROBE... takes it too)
    return any(isinstance(p, click.Argument) and p.nargs == -1 for p in cmd.params)


def assert_one_line(res, status: int, *fragments: str) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), res.stderr
    assert res.returncode == status, res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("name", [n for n in tool_names() if takes_pid(n)])
def test_missing_pid(name):
    res = pytracekit(name, *BASE_ARGS.get(name, []), "--pid", MISSING_PID, timeout=30)
    assert_one_line(res, EXIT_RUNTIME, f"no process with pid {MISSING_PID}")


@pytest.mark.parametrize("name", [n for n in tool_names() if takes_command(n)])
def test_missing_command(name):
    res = pytracekit(name, *BASE_ARGS.get(name, []), "--", MISSING_PROGRAM, timeout=30)
    assert_one_line(res, EXIT_RUNTIME, f"cannot run {MISSING_PROGRAM}", "PATH")


@pytest.mark.parametrize("name", [n for n in tool_names() if takes_pid(n) and takes_command(n)])
def test_pid_and_command_conflict(name):
    res = pytracekit(name, *BASE_ARGS.get(name, []), "--pid", "1", "--", "true", timeout=30)
    assert_one_line(res, EXIT_USAGE, "COMMAND, not both")


@pytest.mark.parametrize("name", [n for n in tool_names()
                                  if "--duration" in _long_options(_command(n))])
def test_negative_duration(name):
    res = pytracekit(name, *BASE_ARGS.get(name, []), "--duration", "-1", timeout=30)
    assert_one_line(res, EXIT_USAGE, "--duration")


@pytest.mark.parametrize("name", [n for n in tool_names()
                                  if "--interval" in _long_options(_command(n))])
def test_zero_interval(name):
    res = pytracekit(name, *BASE_ARGS.get(name, []), "--interval", "0", timeout=30)
    assert_one_line(res, EXIT_USAGE, "--interval")


# The sched family accepts [interval] [count] and a command without `--`; a mistyped
# option used to become the command to run ("cannot run --bogus").
@pytest.mark.parametrize("name", [n for n in tool_names() if takes_command(n)])
def test_unknown_option(name):
    res = pytracekit(name, *BASE_ARGS.get(name, []), "--no-such-option", timeout=30)
    assert_one_line(res, EXIT_USAGE, "--no-such-option")


@pytest.mark.parametrize("args, status, fragment", [
    (["funccount", "t:no_such_category:no_such_event"], EXIT_RUNTIME,
     "unknown tracepoint no_such_category:no_such_event"),
    (["stackcount", "t:sched:no_such_event"], EXIT_RUNTIME, "sched:no_such_event"),
    (["funclatency", "t:sched:sched_switch:extra:parts"], EXIT_USAGE, ""),
    (["trace", "t:sched:sched_switch (("], EXIT_USAGE, ""),
    (["argdist", "-C", "nonsense"], EXIT_USAGE, ""),
    (["argdist", "-C", GETPID, "-H", GETPID], EXIT_USAGE, ""),
    (["stat", "-a", "-e", "no_such:event", "--duration", "0"], EXIT_RUNTIME, "no_such:event"),
    (["stat", "-a", "-e", "syscalls:sys_enter_getpid", "--filter", "((", "--duration", "0"],
     EXIT_USAGE, ""),
    (["systrace", "-a", "-e", "no_such_syscall"], EXIT_RUNTIME, "no_such_syscall"),
    (["syscount", "-e", "NOSUCHERRNO", "-d", "0"], EXIT_USAGE, "NOSUCHERRNO"),
    (["list", "-x", MISSING_PROGRAM, "c:*"], EXIT_RUNTIME, MISSING_PROGRAM),
    (["offcputime", "-U", "-K", "1"], EXIT_USAGE, ""),
    (["profile", "-F", "0", "1"], EXIT_USAGE, ""),
    (["report", "/nonexistent/recording.ptk"], EXIT_RUNTIME, "pytracekit record -o"),
    (["export", "--tool", "no_such_tool", "-d", "0"], EXIT_USAGE, "no_such_tool"),
])
def test_malformed_specs_and_conflicts(args, status, fragment):
    res = pytracekit(*args, timeout=30)
    assert_one_line(res, status, fragment)


# An output that cannot be written is refused before tracing: the run would be lost.
@pytest.mark.parametrize("args", [
    ["profile", "--output", "/nonexistent/dir/out.svg", "5"],
    ["offcputime", "--output", "/nonexistent/dir/out.folded", "5"],
    ["offwaketime", "--output", "/nonexistent/dir/out.folded", "5"],
    ["wakeuptime", "--output", "/nonexistent/dir/out.folded", "5"],
    ["record", "-o", "/nonexistent/dir/out.ptk", "-a", "5"],
])
def test_unwritable_output_is_refused_before_tracing(args):
    res = pytracekit(*args, timeout=30)
    assert_one_line(res, EXIT_USAGE, "cannot write /nonexistent/dir/out.",
                    "no directory /nonexistent/dir")


def test_check_writable(tmp_path):
    from pytracekit.errors import UsageError
    from pytracekit.stacktools import check_writable
    check_writable(None)
    check_writable(str(tmp_path / "new.svg"))
    with pytest.raises(UsageError, match="it is a directory"):
        check_writable(str(tmp_path))
    with pytest.raises(UsageError, match=f"no directory {tmp_path}/missing"):
        check_writable(str(tmp_path / "missing" / "out.svg"))


def test_check_runnable():
    from pytracekit.errors import NotFoundError, UsageError
    from pytracekit.runner import check_runnable
    assert check_runnable("true").endswith("/true")
    with pytest.raises(UsageError, match="no such option: --bogus"):
        check_runnable("--bogus")       # any tool with ignore_unknown_options, not just these
    with pytest.raises(NotFoundError, match="No such file or directory"):
        check_runnable("no-such-program-on-path")
    with pytest.raises(NotFoundError, match="Permission denied"):
        check_runnable("/etc/passwd")
    with pytest.raises(NotFoundError, match="Permission denied"):
        check_runnable("/tmp")

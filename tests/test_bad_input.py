"""Bad input to any tool: one clear line on stderr, exit 2 (usage) or 1 (runtime).

Every tool is covered: those with --pid get a pid that does not exist, those that
run a command get one that does not exist. A new tool is held to this as soon as it
is added; give it the arguments it needs to get that far in BASE_ARGS.

Input refused before anything is attached runs in this process (`run`: cli.main,
with file descriptors 1 and 2 captured); test_launchers_give_the_same_line_and_status
proves on real processes that `tools/TOOL` and `python -m pytracekit` say and exit
the same. Runs that load BPF, or run as another user, are real processes.
"""
import importlib
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import click
import pytest

from pytracekit.cli.command import tool_names
from pytracekit.errors import EXIT_RUNTIME, EXIT_USAGE
from pytracekit.cli.options import CommandAfterDashes

from conftest import ROOT, Tool, pytracekit, pytracekit_as_nobody, pytracekit_in_process

MISSING_PID = "999999"
MISSING_PROGRAM = "/nonexistent/pytracekit-no-such-program"
GETPID = "t:syscalls:sys_enter_getpid"

# What a tool needs besides -p/-- COMMAND before it looks at the pid or command.
BASE_ARGS = {
    "annotate": ["hot_loop"],
    "argdist": ["-C", "t:syscalls:sys_enter_getpid():int:args->__syscall_nr"],
    "cprofile": ["--dir", "/tmp/pytracekit-bad-input"],
    "funccount": [GETPID],
    "funclatency": ["c:getpid"],
    "funcslower": ["c:getpid"],
    "funcinterval": ["c:getpid"],
    "list": ["c:*"],
    "record": ["-o", "/tmp/pytracekit-bad-input.ptk"],
    "timechart": ["-o", "/tmp/pytracekit-bad-input.svg"],
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


def run(*args: str):
    """`pytracekit ARGS` in this process (see the module's docstring)."""
    return pytracekit_in_process(*args)


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
    res = run(name, *BASE_ARGS.get(name, []), "--pid", MISSING_PID)
    assert_one_line(res, EXIT_RUNTIME, f"no process with pid {MISSING_PID}")


@pytest.mark.parametrize("name", [n for n in tool_names() if takes_command(n)])
def test_missing_command(name):
    res = run(name, *BASE_ARGS.get(name, []), "--", MISSING_PROGRAM)
    assert_one_line(res, EXIT_RUNTIME, f"cannot run {MISSING_PROGRAM}", "PATH")


@pytest.mark.parametrize("name", [n for n in tool_names() if takes_pid(n) and takes_command(n)])
def test_pid_and_command_conflict(name):
    res = run(name, *BASE_ARGS.get(name, []), "--pid", "1", "--", "true")
    assert_one_line(res, EXIT_USAGE, "COMMAND, not both")


@pytest.mark.parametrize("name", [n for n in tool_names()
                                  if "--duration" in _long_options(_command(n))])
def test_negative_duration(name):
    res = run(name, *BASE_ARGS.get(name, []), "--duration", "-1")
    assert_one_line(res, EXIT_USAGE, "--duration")


@pytest.mark.parametrize("name", [n for n in tool_names()
                                  if "--interval" in _long_options(_command(n))])
def test_zero_interval(name):
    res = run(name, *BASE_ARGS.get(name, []), "--interval", "0")
    assert_one_line(res, EXIT_USAGE, "--interval")


# The sched family accepts [interval] [count] and a command without `--`; a mistyped
# option used to become the command to run ("cannot run --bogus").
@pytest.mark.parametrize("name", [n for n in tool_names() if takes_command(n)])
def test_unknown_option(name):
    res = run(name, *BASE_ARGS.get(name, []), "--no-such-option")
    assert_one_line(res, EXIT_USAGE, "--no-such-option")


# The launchers themselves, as real processes: `tools/TOOL` (tools/_launch) and
# `python -m pytracekit` say and exit exactly what the in-process run does.
@pytest.mark.parametrize("launcher, args, status", [
    ("tools", ["funccount", GETPID, "--pid", MISSING_PID], EXIT_RUNTIME),
    ("tools", ["profile", "--duration", "-1"], EXIT_USAGE),
    ("module", ["trace", GETPID, "--", MISSING_PROGRAM], EXIT_RUNTIME),
    ("module", ["runqlat", "--no-such-option"], EXIT_USAGE),
    ("module", ["stackcount", GETPID, "--pid", "1", "--", "true"], EXIT_USAGE),
])
def test_launchers_give_the_same_line_and_status(launcher, args, status):
    if launcher == "tools":
        res = subprocess.run([str(ROOT / "tools" / args[0]), *args[1:]], capture_output=True,
                             text=True, timeout=60)
    else:
        res = pytracekit(*args, timeout=60)
    assert_one_line(res, status)
    inside = run(*args)
    assert (inside.returncode, inside.stdout, inside.stderr) == \
        (res.returncode, res.stdout, res.stderr)


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
    (["annotate", "-i", "/nonexistent/recording.ptk", "f"], EXIT_RUNTIME, "pytracekit record -o"),
    (["annotate", "-i", "/nonexistent/recording.ptk", "f", "-p", "1"], EXIT_USAGE,
     "-i annotates a recording"),
    (["script", "-i", "/nonexistent/recording.ptk"], EXIT_RUNTIME, "pytracekit record -o"),
    (["script"], EXIT_USAGE, "Missing option '-i'"),
    (["record", "-o", "/tmp/pytracekit-bad-input.ptk", "-e", "t:sched:sched_switch",
      "--off-cpu", "1"], EXIT_USAGE, "-e and --off-cpu"),
    (["record", "-o", "/tmp/pytracekit-bad-input.ptk", "-e", "t:nosuch:event", "1"],
     EXIT_RUNTIME, "unknown tracepoint nosuch:event"),
    (["export", "--tool", "no_such_tool", "-d", "0"], EXIT_USAGE, "no_such_tool"),
])
def test_malformed_specs_and_conflicts(args, status, fragment):
    res = run(*args)
    assert_one_line(res, status, fragment)


# An output that cannot be written is refused before tracing: the run would be lost.
@pytest.mark.parametrize("args", [
    ["profile", "--output", "/nonexistent/dir/out.svg", "5"],
    ["offcputime", "--output", "/nonexistent/dir/out.folded", "5"],
    ["offwaketime", "--output", "/nonexistent/dir/out.folded", "5"],
    ["wakeuptime", "--output", "/nonexistent/dir/out.folded", "5"],
    ["record", "-o", "/nonexistent/dir/out.ptk", "-a", "5"],
    ["timechart", "-o", "/nonexistent/dir/out.svg", "-d", "5"],
])
def test_unwritable_output_is_refused_before_tracing(args):
    res = run(*args)
    assert_one_line(res, EXIT_USAGE, "cannot write /nonexistent/dir/out.",
                    "no directory /nonexistent/dir")


def test_check_writable(tmp_path):
    from pytracekit.errors import UsageError
    from pytracekit.families.stack_profilers import check_writable
    check_writable(None)
    check_writable(str(tmp_path / "new.svg"))
    with pytest.raises(UsageError, match="it is a directory"):
        check_writable(str(tmp_path))
    with pytest.raises(UsageError, match=f"no directory {tmp_path}/missing"):
        check_writable(str(tmp_path / "missing" / "out.svg"))


def test_check_runnable():
    from pytracekit.errors import NotFoundError, UsageError
    from pytracekit.engine.runner import check_runnable
    assert check_runnable("true").endswith("/true")
    with pytest.raises(UsageError, match="no such option: --bogus"):
        check_runnable("--bogus")       # any tool with ignore_unknown_options, not just these
    with pytest.raises(NotFoundError, match="No such file or directory"):
        check_runnable("no-such-program-on-path")
    with pytest.raises(NotFoundError, match="Permission denied"):
        check_runnable("/etc/passwd")
    with pytest.raises(NotFoundError, match="Permission denied"):
        check_runnable("/tmp")


# -- Bad input that escaped as "internal error" (issue 11) ----------------------
# Each is one line naming the problem and what would work, status 2 (usage) or 1
# (runtime). "{name}" in an argument is a file from `bad_files`; AS_NOBODY runs
# the rest as user nobody.

AS_NOBODY = "as-nobody"
DEEP = "(" * 500 + "args->__syscall_nr" + ")" * 500
DEEP_TP_FILTER = "(" * 500 + "__syscall_nr == 1" + ")" * 500


def _max_sample_rate() -> int:
    from pytracekit.cli.options import max_sample_rate
    return max_sample_rate() or 100000


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    """Files the table names: a truncated and a damaged ELF, a binary under a path
    with spaces and one under a path that is not ASCII, in a directory anyone
    may read (user nobody runs some rows)."""
    base = tmp_path_factory.mktemp("bad-input")
    base.chmod(0o755)
    python = open(sys.executable, "rb").read()
    files = {"truncated": base / "truncated", "damaged": base / "damaged",
             "spaces": base / "with spaces", "nonascii": base / "caf\u00e9"}
    files["truncated"].write_bytes(python[:7])
    files["damaged"].write_bytes(python[:100000])
    for name in ("spaces", "nonascii"):
        shutil.copy(sys.executable, files[name])
    return {name: str(path) for name, path in files.items()}


def _filled(args: list[str], files: dict[str, str]) -> list[str]:
    return [arg.format(**files) if arg.startswith("{") else arg for arg in args]


@pytest.mark.root
@pytest.mark.parametrize("args, status, fragment", [
    # not root, with a tracepoint spec: tracefs is root's only
    ([AS_NOBODY, "funccount", GETPID], EXIT_RUNTIME, "needs root"),
    ([AS_NOBODY, "trace", GETPID], EXIT_RUNTIME, "needs root"),
    # 500 nested parentheses: a RecursionError before
    (["trace", f"{GETPID} ({DEEP} == 1)"], EXIT_USAGE, "nested more than 32 levels deep"),
    (["argdist", "-C", f"{GETPID}():int:{DEEP}"], EXIT_USAGE, "nested more than 32 levels"),
    (["stat", "-a", "-e", "syscalls:sys_enter_getpid", "--filter", DEEP_TP_FILTER,
      "--duration", "0"], EXIT_USAGE, "nested more than 32 levels deep"),
    (["trace", f"{GETPID} (args->__syscall_nr == {'+'.join(['1'] * 600)})"], EXIT_USAGE,
     "expression too long (more than 512 tokens)"),
    # list -x on a broken ELF, a path with spaces, a path BCC cannot encode
    (["list", "-x", "{truncated}"], EXIT_USAGE, "is a truncated ELF file"),
    (["list", "-x", "{damaged}"], EXIT_USAGE, "is a truncated or damaged ELF file"),
    (["list", "-x", "{spaces}", "no_such_function_*"], EXIT_RUNTIME, "matches 'no_such"),
    (["list", "-x", "{nonascii}", "python:*"], EXIT_RUNTIME, "its path is not ASCII"),
    # a command path that is not UTF-8
    (["funccount", GETPID, "--", "/nonexistent/\udcff"], EXIT_RUNTIME, "cannot run"),
    # NaN, infinite and too long durations and intervals (top -d nan never ended)
    (["top", "-b", "-d", "nan"], EXIT_USAGE, "nan is not a number of seconds"),
    (["top", "-b", "--duration", "inf"], EXIT_USAGE, "inf is not a number of seconds"),
    (["syscount", "-d", "nan"], EXIT_USAGE, "nan is not a number of seconds"),
    (["syscount", "-i", "nan"], EXIT_USAGE, "nan is not a number of seconds"),
    (["syscount", "-d", "1e12"], EXIT_USAGE, "more than a year"),
    (["runqlat", "nan"], EXIT_USAGE, "interval nan is not a number of seconds"),
    (["runqlat", "1", "inf"], EXIT_USAGE, "count inf is not a whole number"),
    # `[interval [count]]` beside the flags that say the same (argdist's count is -n)
    (["argdist", "-C", f"{GETPID}():int:args->__syscall_nr", "-n", "2", "1", "3"], EXIT_USAGE,
     "give the count once: positionally or with -n"),
    (["funccount", "-i", "1", GETPID, "2"], EXIT_USAGE,
     "give the interval once: positionally or with --interval"),
    (["stat", "-e", "syscalls:sys_enter_getpid", "1", "0", "--", "true"], EXIT_USAGE,
     "count 0 is not a whole number 1 or more"),
    (["profile", "inf"], EXIT_USAGE, "inf is not a number of seconds"),
    (["cprofile", "--dir", "/tmp", "--every", "nan"], EXIT_USAGE, "nan is not a number"),
    (["memleak", "-o", "nan", "-p", "1"], EXIT_USAGE, "nan is not a finite number"),
    (["report", "--min-percent", "nan", "/nonexistent.ptk"], EXIT_USAGE, "not a finite number"),
    # `--` and no command: profiled the whole system
    (["profile", "--"], EXIT_USAGE, "nothing after '--'"),
    (["runqlat", "--"], EXIT_USAGE, "nothing after '--'"),
    # sizes without an upper bound (--stack-storage-size 2000000000 spun 50 s)
    (["profile", "--stack-storage-size", "2000000000"], EXIT_USAGE, "1<=x<=1048576"),
    (["stackcount", "--max-stacks", "2000000000", GETPID], EXIT_USAGE, "1<=x<=4194304"),
    (["opensnoop", "-b", "1073741824"], EXIT_USAGE, "1<=x<=65536"),
    (["memleak", "--max-allocs", "2000000000", "-p", "1"], EXIT_USAGE, "1<=x<=4194304"),
    # integer literals outside 64 bits (a clang error in tracepoint filters)
    (["trace", f"{GETPID} (args->__syscall_nr == 99999999999999999999)"], EXIT_USAGE,
     "does not fit 64 bits at column 23"),
    (["trace", f"{GETPID} (args->__syscall_nr == -18446744073709551615)"], EXIT_USAGE,
     "does not fit 64 bits"),
    (["stat", "-a", "-e", "syscalls:sys_enter_getpid", "--filter",
      "__syscall_nr == 99999999999999999999", "--duration", "0"], EXIT_USAGE,
     "number '99999999999999999999' does not fit 64 bits at column 17"),
    # -F above kernel.perf_event_max_sample_rate
    (["profile", "-F", str(_max_sample_rate() + 1)], EXIT_USAGE,
     f"above the kernel's limit of {_max_sample_rate()} samples per second "
     "(kernel.perf_event_max_sample_rate)"),
    (["record", "-o", "/tmp/pytracekit-bad-input.ptk", "-F", str(_max_sample_rate() + 1)],
     EXIT_USAGE, "kernel.perf_event_max_sample_rate"),
    # cprofile: refused at start, not counted as failed pushes after the run
    (["cprofile", "--push", "notaurl"], EXIT_USAGE, "--push 'notaurl' is not an http(s) URL"),
    (["cprofile", "--dir", "/proc/self"], EXIT_USAGE, "cannot use --dir /proc/self"),
])
def test_bad_input_is_one_line(args, status, fragment, bad_files):
    args = _filled(args, bad_files)
    if args[0] == AS_NOBODY:
        res = pytracekit_as_nobody(*args[1:])
    else:
        res = run(*args)
    assert "internal error" not in res.stderr
    assert_one_line(res, status, fragment)


@pytest.mark.root
def test_command_path_not_utf8_is_traced(tmp_path):
    """A command named by bytes that are not UTF-8 runs and is reported."""
    program = os.path.join(os.fsencode(tmp_path), b"\xff")
    shutil.copy("/bin/true", program)
    res = pytracekit("funccount", "t:syscalls:sys_enter_exit_group", "--",
                     os.fsdecode(program), timeout=60)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr and "error" not in res.stderr
    assert "sys_enter_exit_group" in res.stdout and res.stdout.split()[-1] == "1", res.stdout


@pytest.mark.root
def test_export_on_port_0_announces_the_bound_port():
    from fleet_helpers import http_get
    with Tool("export", "--tool", "syscount", "--listen", "127.0.0.1:0") as tool:
        line = tool.proc.stderr.readline()
        match = re.search(r"on http://127\.0\.0\.1:(\d+)/metrics ", line)
        assert match and int(match.group(1)) > 0, line
        status, body = http_get(f"http://127.0.0.1:{match.group(1)}/metrics")
        tool.stop()
    assert status == 200 and b"pytracekit_" in body, body[:300]


def _on_a_terminal(args: list[str], term: str | None, timeout: float = 60) -> tuple[int, str]:
    """Run pytracekit ARGS with a pseudo-terminal as stdin/stdout/stderr."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "TERM"}
    if term is not None:
        env["TERM"] = term
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", *args], stdin=slave,
                            stdout=slave, stderr=slave, env=env, cwd=ROOT)
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], timeout)
            if not ready:
                raise AssertionError(f"no end within {timeout} s: {out[-500:]!r}")
            try:
                chunk = os.read(master, 65536)
            except OSError:      # EIO: every holder of the terminal is gone
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    return proc.returncode, out.decode(errors="replace")


@pytest.mark.root
@pytest.mark.parametrize("term", ["dumb", None, "no-such-terminal"])
def test_top_on_a_terminal_curses_cannot_drive(term):
    """TERM=dumb (or none, or unknown): plain refreshes as with -b, not a curses error."""
    status, out = _on_a_terminal(["top", "-d", "0.2", "-n", "2"], term)
    assert status == 0, out
    assert "internal error" not in out and "Traceback" not in out, out
    assert out.count("%CPU") == 2, out


# -- Every tool, generic bad values: never an internal error ---------------------

GENERIC_BAD = [("--duration", "-1"), ("--duration", "nan"), ("--duration", "inf"),
               ("--interval", "0"), ("--interval", "nan"), ("--interval", "-inf"),
               ("--pid", None), ("--pid", "notapid")]


def _sweep_cases():
    for name in tool_names():
        opts = _long_options(_command(name))
        for opt, value in GENERIC_BAD:
            if opt in opts:
                yield pytest.param(name, opt, value, id=f"{name}-{opt}-{value}")


@pytest.mark.parametrize("name, opt, value", list(_sweep_cases()))
def test_generic_bad_values_are_usage_errors(name, opt, value, capsys):
    """In-process (click rejects these before a tool runs): one line, status 2."""
    from pytracekit.cli.command import main
    args = [name, *BASE_ARGS.get(name, []), opt] + ([value] if value is not None else [])
    status = main(args)
    err = capsys.readouterr().err
    assert "internal error" not in err and "Traceback" not in err, err
    assert status == EXIT_USAGE and len(err.splitlines()) == 1 and opt.lstrip("-") in err, err


DURATION_TOOLS = [n for n in tool_names() if "--duration" in _long_options(_command(n))]


@pytest.fixture(scope="module")
def zero_duration_runs(request) -> dict:
    """`--duration 0` of the tools whose test this session runs, two at a time
    (a compile keeps one CPU busy)."""
    names = [item.callspec.params["name"] for item in request.session.items
             if item.originalname == "test_zero_duration_ends_at_once"]

    def run_zero(name: str):
        try:
            return pytracekit(name, *BASE_ARGS.get(name, []), "--duration", "0", timeout=90)
        except subprocess.TimeoutExpired as exc:   # that tool's test fails with it
            return exc
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(run_zero, names)))


@pytest.mark.root
@pytest.mark.alone("every-tool")   # its batch compiles every tool two at a time: one batch at once (conftest)
@pytest.mark.parametrize("name", DURATION_TOOLS)
def test_zero_duration_ends_at_once(name, zero_duration_runs):
    """-d 0 is not an error: the tool attaches and ends at once (tests use it
    as a load check); where the tool needs more it says so in one line."""
    res = zero_duration_runs[name]
    if isinstance(res, Exception):
        raise res
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr, res.stderr
    if res.returncode:
        assert_one_line(res, EXIT_USAGE)

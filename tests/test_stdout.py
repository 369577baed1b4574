"""A closed or full stdout ends every tool quietly (pytracekit.cli.stdout, cli.main).

`| head -1`: status 0, no traceback or "Exception ignored" flood, probes
detached. `> /dev/full` or `>&-`: status 1 and one error line. Streaming tools
are run on a workload that would outlive the test's bound by far, so only the
closed pipe can end them.
"""
import os
import subprocess
import sys

import pytest

from conftest import ROOT, pytracekit_probes_left

LIVENESS_S = 60        # generous: the tool must end long before its workload does
NOISE = ("Traceback", "Exception ignored", "internal error", "error:")


def run_tool(*args: str, stdout, preexec=None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytracekit", *args], stdout=stdout,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, preexec_fn=preexec)


def first_line_then_close(args: list[str]) -> tuple[str, int, str]:
    """`pytracekit ARGS | head -1`: read one line, close the pipe, wait."""
    proc = run_tool(*args, stdout=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        proc.stdout.close()
        _, err = proc.communicate(timeout=LIVENESS_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return line, proc.returncode, err


def assert_quiet(err: str) -> None:
    for noise in NOISE:
        assert noise not in err, err


@pytest.mark.root
def test_trace_ends_when_the_reader_goes_away(workload):
    # 10^9 traced calls take far longer than LIVENESS_S: the pipe must end it.
    line, status, err = first_line_then_close(
        ["trace", f"p:{workload}:counted_function", "--", workload, "calls", "1000000000"])
    assert line.split()[:4] == ["PID", "TID", "COMM", "FUNC"], line
    assert status == 0, err
    assert_quiet(err)
    assert not pytracekit_probes_left()


@pytest.mark.root
def test_trace_json_ends_when_the_reader_goes_away(workload):
    # The first line is an event: the pipe breaks inside the ring-buffer callback.
    line, status, err = first_line_then_close(
        ["trace", "--json", f"p:{workload}:counted_function", "--", workload, "calls",
         "1000000000"])
    assert '"type": "event"' in line or '"type":"event"' in line, line
    assert status == 0, err
    assert_quiet(err)
    assert not pytracekit_probes_left()


@pytest.mark.root
def test_snoop_ends_when_the_reader_goes_away(workload, tmp_path):
    path = tmp_path / "opened"
    line, status, err = first_line_then_close(
        ["opensnoop", "--", workload, "openpaced", str(path), "100000000", "0"])
    assert line.split()[:2] == ["PID", "COMM"], line
    assert status == 0, err
    assert_quiet(err)


@pytest.mark.root
def test_systrace_ends_when_the_reader_goes_away(workload):
    line, status, err = first_line_then_close(
        ["systrace", "--", workload, "calls", "1000000000"])
    assert "execve(" in line, line
    assert status == 0, err
    assert_quiet(err)


def one_error_line(err: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1, err
    return errors[0]


@pytest.mark.root
@pytest.mark.parametrize("tool", ["funccount", "trace", "opensnoop"])
def test_full_stdout_is_one_line_and_status_1(tool, workload, tmp_path):
    args = {"funccount": ["funccount", f"p:{workload}:counted_function", "--", workload,
                          "calls", "100"],
            "trace": ["trace", f"p:{workload}:counted_function", "--", workload,
                      "calls", "100"],
            "opensnoop": ["opensnoop", "--", workload, "openpaced", str(tmp_path / "f"),
                          "100", "0"]}[tool]
    with open("/dev/full", "w") as full:
        proc = run_tool(*args, stdout=full)
        _, err = proc.communicate(timeout=LIVENESS_S)
    assert proc.returncode == 1, err
    assert one_error_line(err) == (f"pytracekit {tool}: error: cannot write the output to "
                                   "stdout: No space left on device")
    assert not pytracekit_probes_left()


@pytest.mark.root
@pytest.mark.parametrize("tool", ["funccount", "trace"])
def test_closed_stdout_is_one_line_and_status_1(tool, workload):
    proc = run_tool(tool, f"p:{workload}:counted_function", "--", workload, "calls", "100",
                    stdout=None, preexec=lambda: os.close(1))
    _, err = proc.communicate(timeout=LIVENESS_S)
    assert proc.returncode == 1, err
    assert one_error_line(err) == (f"pytracekit {tool}: error: cannot write the output: "
                                   "stdout is closed (redirect it to a file instead)")


def test_closed_stdout_fails_only_when_written():
    """A run that prints nothing to stdout ends normally with stdout closed;
    meanwhile fd 1 holds /dev/null close-on-exec (no file the tool opens
    lands on fd 1, and a command it starts sees stdout closed)."""
    code = ("import os, sys\n"
            "from pytracekit.cli import stdout\n"
            "with stdout.guarded():\n"
            "    fd = os.open('/dev/null', os.O_RDONLY)\n"
            "    sys.stderr.write(f'fd={fd} cloexec={not os.get_inheritable(1)}\\n')\n"
            "    sys.stdout.write('dropped')\n"
            "    try:\n"
            "        sys.stdout.flush()\n"
            "    except stdout.StdoutError as exc:\n"
            "        sys.stderr.write(exc.message + '\\n')\n"
            "    sys.stdout.write('after')\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, preexec_fn=lambda: os.close(1))
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == [
        "fd=3 cloexec=True",
        "cannot write the output: stdout is closed (redirect it to a file instead)"]


@pytest.mark.root
def test_a_pipe_taking_part_of_a_write_still_gets_every_line(workload, tmp_path):
    """A non-blocking pipe takes only what fits of a write (as a blocking one
    does when a signal interrupts the write: a Ctrl-C while the reader lags).
    Unbuffered (PYTHONUNBUFFERED, python -u, as CI runs) the rest of the
    batch was dropped: 5002 events captured and printed, 1138 lines arrived.
    Nothing is read until the pipe is full, so a write surely came up short."""
    import fcntl
    import json
    import struct
    import termios
    from conftest import wait_until
    opens, path = 5000, str(tmp_path / "f")
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", "opensnoop", "--json", "--",
                             workload, "open", path, str(opens)],
                            stdout=write_end, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(write_end)
    try:
        capacity = fcntl.fcntl(read_end, 1032)              # F_GETPIPE_SZ

        def pending() -> int:
            return struct.unpack("i", fcntl.ioctl(read_end, termios.FIONREAD, b"\0" * 4))[0]
        assert wait_until(lambda: pending() >= capacity - 4096, timeout=LIVENESS_S)
        with os.fdopen(read_end, "rb") as pipe:
            out = pipe.read().decode()
        _, err = proc.communicate(timeout=LIVENESS_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    objects = [json.loads(line) for line in out.splitlines()]   # every line whole
    events = [o for o in objects if o["type"] == "event"]
    [loss] = [o for o in objects if o["type"] == "loss"]
    assert len(events) == loss["printed"] == loss["captured"], err
    assert sum(e["path"] == path for e in events) == opens

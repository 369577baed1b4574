"""systrace: one decoded line per system call, for a command or a pid."""
import os
import re

import pytest

from conftest import Tool, pytracekit
from whohelpers import GatedWorkload, as_nobody, validate_json_lines

from pytracekit.render.syscall_args import open_flags, result_text

LINE = re.compile(r"^\s+\d+\.\d{3} \(\s*\d+\.\d{3} ms\): (\S+)/(\d+) (\w+)\((.*)\) = (.+)$")


def _calls(out):
    return [o for o in validate_json_lines("systrace", out) if o["type"] == "syscall"]


@pytest.mark.root
def test_command_opens_are_decoded(workload, tmp_path):
    marker = str(tmp_path / "marker")
    res = pytracekit("systrace", "--json", "-e", "execve,openat,close,exit_group", "--",
                     workload, "open", marker, "3")
    assert res.returncode == 0, res.stderr
    calls = _calls(res.stdout)
    execve = calls.pop(0)       # the command's own exec, then nothing before it
    assert (execve["syscall"], execve["args"]["filename"], execve["ret"]) == \
        ("execve", workload, 0)
    mine = [c for c in calls if c["syscall"] == "openat" and c["args"]["filename"] == marker]
    assert len(mine) == 3
    for c in mine:
        assert c["args"]["flags"] == "RDONLY|CREAT" and c["args"]["mode"] == "0644"
        assert c["args"]["dfd"] == "CWD" and c["ret"] >= 0 and c["errno"] is None
        assert c["duration_ms"] >= 0 and c["comm"] == "workload"
    loader = [c["args"]["filename"] for c in calls if c["syscall"] == "openat"
              and c["args"]["filename"] != marker]
    assert "/etc/ld.so.cache" in loader
    closes = [c for c in calls if c["syscall"] == "close"]
    assert len(closes) == 3 + len(loader)   # every successful open is closed
    assert calls[-1]["syscall"] == "exit_group" and calls[-1]["ret"] is None


@pytest.mark.root
def test_pid_failures_and_text_layout(workload, tmp_path):
    missing = "/nonexistent-dir/marker"
    with GatedWorkload(workload, tmp_path, "open", missing, "2") as w:
        tool = Tool("systrace", "-p", str(w.pid), "-x", "-e", "openat").start()
        assert w.release() == 0
        out, err = tool.wait()          # ends when the process exits
    assert tool.returncode == 0, err
    lines = [LINE.match(line) for line in out.splitlines()]
    assert all(lines), out
    assert [(m.group(1), int(m.group(2)), m.group(3)) for m in lines] == \
        [("workload", w.pid, "openat")] * 2
    for m in lines:
        assert m.group(4) == f'dfd: CWD, filename: "{missing}", flags: RDONLY|CREAT, mode: 0644'
        assert m.group(5) == "-1 ENOENT (No such file or directory)"


def test_decoders():
    assert open_flags(os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC) == \
        "WRONLY|CREAT|TRUNC|CLOEXEC"
    assert result_text("openat", -2) == "-1 ENOENT (No such file or directory)"
    assert result_text("mmap", 0x7f0000001000) == "0x7f0000001000"
    assert result_text("exit_group", 0, returned=False) == "?"


@pytest.mark.root
@pytest.mark.parametrize("args, status, message", [
    ([], 2, "give -p PID, -t TID, -- COMMAND, or -a"),
    (["-a", "-p", "1"], 2, "-a traces every process"),
    (["-p", "999999999"], 1, "no process with pid 999999999"),
    (["-e", "opne", "--", "true"], 1, "unknown system call 'opne'"),
    (["-e", "openat,,close", "--", "true"], 2, "malformed -e 'openat,,close'"),
    (["--", "/no/such/program"], 1, "cannot run /no/such/program"),
    (["--min-duration", "nan", "--", "true"], 2, "--min-duration nan: give milliseconds"),
    (["--min-duration", "-1", "--", "true"], 2, "--min-duration -1.0: give milliseconds"),
    (["-s", "-S", "--", "true"], 2, "give one of them"),
    (["-F", "major", "--", "true"], 2, "'major' is not one of 'all', 'maj', 'min'"),
])
def test_bad_input_is_one_line(args, status, message):
    res = pytracekit("systrace", *args)
    assert res.returncode == status, res.stderr
    assert message in res.stderr
    assert res.stderr.count("\n") == 1, res.stderr


def test_not_root_is_one_line():
    res = as_nobody("systrace", "--", "true")
    assert res.returncode == 1 and "needs root" in res.stderr
    assert res.stderr.count("\n") == 1


@pytest.mark.root
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_stream_of_calls_ends_the_run(workload, tmp_path, sig):
    """A process making system calls as fast as it can: libbpf would consume
    for as long as they come, and a signal raised between callbacks is dropped
    by ctypes. The run must still end at once, with what it printed."""
    import signal
    import subprocess
    burst = subprocess.Popen([workload, "open", str(tmp_path / "s"), "100000000"])
    try:
        with Tool("systrace", "-p", str(burst.pid)) as tool:
            out, err = tool.stop(getattr(signal, sig), timeout=20)
    finally:
        burst.kill()
        burst.wait()
    assert tool.returncode == 0, err
    assert "openat" in out and "Traceback" not in err


def _strace_calls(*command: str) -> dict[str, int]:
    """`strace -f -c`'s calls column per syscall: the oracle."""
    import subprocess
    res = subprocess.run(["strace", "-f", "-c", "-o", "/dev/stderr", *command],
                         capture_output=True, text=True, timeout=60, check=True)
    return {cols[-1]: int(cols[3]) for cols in map(str.split, res.stderr.splitlines())
            if len(cols) >= 5 and cols[3].isdigit() and cols[-1] != "total"}


@pytest.mark.root
def test_a_call_without_arguments_shows_none(workload):
    """getpid takes no arguments: `getpid() = PID`, as often as strace counts it."""
    res = pytracekit("systrace", "-e", "getpid", "--", workload, "signals", "3")
    assert res.returncode == 0, res.stderr
    calls = [m for m in map(LINE.match, res.stdout.splitlines()) if m]
    assert calls and {(m.group(3), m.group(4)) for m in calls} == {("getpid", "")}
    assert {m.group(5) for m in calls} == {m.group(2) for m in calls}   # its own pid
    assert len(calls) == _strace_calls(workload, "signals", "3")["getpid"]


@pytest.mark.root
def test_an_unreadable_string_shows_its_address_and_is_counted(workload, tmp_path):
    """The workload opens a path held in a file mapping it never touched: BPF
    cannot read it at sys_enter (the kernel faults it in later). The argument
    shows as its address, as perf trace shows it, never as "", and the run
    counts it."""
    target = str(tmp_path / "target")
    res = pytracekit("systrace", "--json", "-e", "openat", "--", workload, "unreadable", "4",
                     target)
    assert res.returncode == 0, res.stderr
    objs = validate_json_lines("systrace", res.stdout)
    opens = [o for o in objs if o["type"] == "syscall" and o["args"]["flags"] == "RDONLY"
             and o["ret"] >= 0 and not o["args"]["filename"].startswith("/")]
    assert len(opens) == 4
    assert all(re.fullmatch(r"0x[0-9a-f]+", o["args"]["filename"]) for o in opens), opens
    assert objs[-1]["type"] == "loss" and objs[-1]["unreadable_strings"] == 4
    res = pytracekit("systrace", "-e", "openat", "--", workload, "unreadable", "2", target)
    assert "WARNING: 2 strings unreadable (not paged in; shown as [unreadable] or as " \
           "their address)" in res.stderr


# -- as complete as perf trace: --min-duration, -s/-S, -F, --call-graph ------

@pytest.mark.root
def test_summary_counts_what_strace_counts(workload, tmp_path):
    """-s: per thread, per syscall calls and errors as `strace -c -f` counts
    them (exit_group never returns: neither counts it), and no per-call lines."""
    marker = str(tmp_path / "marker")
    res = pytracekit("systrace", "-s", "--json", "--", workload, "open", marker, "5")
    assert res.returncode == 0, res.stderr
    objects = validate_json_lines("systrace", res.stdout)
    rows = [o for o in objects if o["type"] == "summary"]
    assert [o["type"] for o in objects] == ["summary"] * len(rows) + ["loss"]
    assert {r["comm"] for r in rows} == {"workload"} and len({r["tid"] for r in rows}) == 1
    assert {r["syscall"]: r["calls"] for r in rows} == \
        _strace_calls(workload, "open", marker, "5")
    opens = next(r for r in rows if r["syscall"] == "openat")
    assert opens["errors"] == 0 and opens["calls"] >= 5
    assert opens["min_ms"] <= opens["avg_ms"] <= opens["max_ms"]
    assert abs(opens["avg_ms"] * opens["calls"] - opens["total_ms"]) < 0.01
    assert next(r for r in rows if r["syscall"] == "access")["errors"] == 1   # ld.so's probe


def test_summary_text_and_stddev_as_perf_prints_them():
    from pytracekit.render.syscall_summary import Summary
    summary = Summary()
    for ns in (1_000_000, 2_000_000, 3_000_000):
        summary.add(7, 8, "app", "read", ns, False)
    summary.add(7, 8, "app", "openat", 500_000, True)
    summary.add(7, 9, "worker", "close", 10_000, False)
    lines = summary.text().splitlines()
    assert lines[1:4] == [" Summary of events:", "", " app (8), 4 events, 80.0%"]
    assert lines[5].split() == ["syscall", "calls", "errors", "total", "min", "avg", "max",
                                "stddev"]
    assert lines[6].split() == ["(msec)"] * 4 + ["(%)"]
    # sorted by total time; stddev of the mean: sqrt(1 ms^2 / 3) / 2 ms = 28.87%
    assert lines[8].split() == ["read", "3", "0", "6.000", "1.000", "2.000", "3.000", "28.87%"]
    assert lines[9].split() == ["openat", "1", "1", "0.500", "0.500", "0.500", "0.500", "0.00%"]
    assert " worker (9), 1 events, 20.0%" in lines
    assert [(o["tid"], o["syscall"], o["errors"]) for o in summary.objects()] == \
        [(8, "read", 0), (8, "openat", 1), (9, "close", 0)]


@pytest.mark.root
def test_slow_calls_and_minor_faults(workload):
    """--min-duration (perf trace --duration): of the workload's `touch 16
    400` only its 400 ms sleep; -F min: the 16 fresh pages it writes from one
    instruction are exactly 16 minor faults there, a page apart; --call-graph
    fp: the workload keeps frame pointers, so each fault's stack starts
    touch_pages, main."""
    # (its sleep, 400 ms, keeps it alive while its faults' stacks are named from its
    # mappings, however late a loaded machine runs the reader)
    res = pytracekit("systrace", "-F", "min", "--min-duration", "50", "--call-graph", "fp",
                     "--json", "--", workload, "touch", "16", "400")
    assert res.returncode == 0, res.stderr
    objects = validate_json_lines("systrace", res.stdout)
    calls = [o for o in objects if o["type"] == "syscall"]
    assert all(o["duration_ms"] >= 50 for o in calls), calls
    assert [o["duration_ms"] >= 100 for o in calls if o["syscall"] == "clock_nanosleep"] == [True]
    assert len(calls) < 5, calls      # the workload makes ~40 calls, all but one fast
    faults = [o for o in objects if o["type"] == "fault"]
    assert {f["fault"] for f in faults} == {"min"}
    ips = {}
    for f in faults:
        ips.setdefault(f["ip"], []).append(f["address"])
    touched = max(ips.values(), key=len)
    assert sorted(touched) == list(range(min(touched), min(touched) + 16 * 4096, 4096))
    ip = next(ip for ip, pages in ips.items() if pages is touched)
    assert {tuple(f["user_stack"][:2]) for f in faults if f["ip"] == ip} == \
        {("touch_pages", "main")}


@pytest.mark.root
def test_call_graph_dwarf_names_each_calls_stack(workload, tmp_path):
    """--call-graph dwarf: libc has no frame pointers; the CFI unwinder still
    reaches main and libc's start for each of the workload's opens."""
    marker = str(tmp_path / "marker")
    res = pytracekit("systrace", "--call-graph", "dwarf", "--json", "-e", "openat", "--",
                     workload, "open", marker, "3")
    assert res.returncode == 0, res.stderr
    mine = [o for o in validate_json_lines("systrace", res.stdout)
            if o["type"] == "syscall" and o["args"]["filename"] == marker]
    assert len(mine) == 3
    for o in mine:
        assert o["user_stack"][1:] == ["main", "__libc_start_call_main", "__libc_start_main",
                                       "_start"], o["user_stack"]
        assert "open" in o["user_stack"][0]


def test_a_stack_is_printed_under_its_line():
    from pytracekit.tools.systrace import KIND_MINFAULT, Record
    call = Record(1.5, 0.25, 7, 8, "app", 39, (0,) * 6, (None, None), 7, True,
                  stack=("getpid", "main"))
    assert call.text().splitlines() == [
        "     1.500 ( 0.250 ms): app/8 getpid() = 7", " " * 12 + "getpid", " " * 12 + "main"]
    fault = Record(2.0, 0.0, 7, 8, "app", 0, (0x401000, 0x7f0000001000, 0, 0, 0, 0),
                   (None, None), 0, True, KIND_MINFAULT)
    assert fault.text() == "     2.000 ( 0.000 ms): app/8 minfault [0x401000 => 0x7f0000001000]"
    named = Record(2.0, 0.0, 7, 8, "app", 0, (0x401000, 0x7f0000001000, 0, 0, 0, 0),
                   (None, None), 0, True, KIND_MINFAULT, ("touch_pages", "main"))
    assert named.text().splitlines()[0].endswith("minfault [touch_pages => 0x7f0000001000]")
    assert fault.as_json() == {"type": "fault", "time_ms": 2.0, "pid": 7, "tid": 8,
                               "comm": "app", "fault": "min", "ip": 0x401000,
                               "address": 0x7f0000001000}

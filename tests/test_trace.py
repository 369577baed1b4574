"""trace: real probes on the workload, exact line counts, errors, lost events."""
import re
import signal
import subprocess
import sys

import pytest

from conftest import ROOT, Tool, pytracekit, pytracekit_probes_left, run_workload, wait_until
from probe_helpers import one_error_line, validated_json_lines

OPENAT = "t:syscalls:sys_enter_openat"


def event_lines(out: str) -> list[str]:
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "TID", "COMM", "FUNC", "-"], out
    return [line for line in lines[1:] if line.strip() and not line.startswith("        ")]


def lost_events(err: str) -> int:
    m = re.search(r"(\d+) events lost \(buffer full\)", err)
    return int(m.group(1)) if m else 0


@pytest.mark.root
def test_exactly_n_lines_for_n_opens_of_the_marker_path(workload, tmp_path):
    marker = str(tmp_path / "marker")
    probe = f'{OPENAT} (args->filename == "{marker}") "%s %d", args->filename, args->dfd'
    with Tool("trace", probe) as tool:
        run_workload(workload, "open", marker, "7")
        run_workload(workload, "open", marker + "x", "3")     # a longer name: not counted
        out, err = tool.stop()
    assert tool.returncode == 0, err
    lines = event_lines(out)
    assert len(lines) == 7, out
    for line in lines:
        pid, tid, comm, func, path, dfd = line.split()
        assert (comm, func, path, dfd) == ("workload", "sys_enter_openat", marker, "-100")
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_uprobe_with_signature_filter_and_format_on_a_command(workload):
    res = pytracekit("trace", 'c:malloc(size_t size) (size == 4242) "size=%d", size',
                     "--", workload, "malloc", "5", "4242")
    assert res.returncode == 0, res.stderr
    lines = event_lines(res.stdout)
    assert [line.split()[2:] for line in lines] == [["workload", "malloc", "size=4242"]] * 5


@pytest.mark.root
def test_return_probe_sees_retval_and_entry_arguments(workload):
    res = pytracekit("trace", "-t",
                     'r:c:malloc (retval != 0 && $entry(arg1) == 4243) "ret=%p size=%d", '
                     "retval, $entry(arg1)", "--", workload, "malloc", "4", "4243")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].split()[:2] == ["TIME", "PID"]
    events = lines[1:]
    assert len(events) == 4, res.stdout
    for line in events:
        assert re.fullmatch(r"\d+\.\d+ +\d+ +\d+ +workload +malloc +ret=0x[0-9a-f]+ size=4243",
                            line), line


@pytest.mark.root
def test_several_probes_in_one_run_and_max_events(workload, tmp_path):
    marker = str(tmp_path / "m")
    res = pytracekit("trace", f'{OPENAT} (args->filename == "{marker}") "%s", args->filename',
                     'c:malloc(size_t size) (size == 4244) "%u", size',
                     "--", workload, "open", marker, "3")
    assert res.returncode == 0, res.stderr
    assert [line.split()[3:] for line in event_lines(res.stdout)] == \
        [["sys_enter_openat", marker]] * 3
    res = pytracekit("trace", "-M", "2", f'{OPENAT} (args->filename == "{marker}")',
                     "--", workload, "open", marker, "6")
    assert res.returncode == 0, res.stderr
    assert len(event_lines(res.stdout)) == 2


@pytest.mark.root
def test_kernel_stacks_are_printed_per_event(workload, tmp_path):
    marker = str(tmp_path / "k")
    res = pytracekit("trace", "-K", f'{OPENAT} (args->filename == "{marker}")',
                     "--", workload, "open", marker, "1")
    assert res.returncode == 0, res.stderr
    frames = [line.strip() for line in res.stdout.splitlines() if line.startswith("        ")]
    assert "do_syscall_64" in frames, res.stdout


@pytest.mark.root
def test_lost_events_are_counted_and_reported(workload, tmp_path):
    marker = str(tmp_path / "burst")
    n = 20000
    res = pytracekit("trace", "--buffer-pages", "1",
                     f'{OPENAT} (args->filename == "{marker}") "%s", args->filename',
                     "--", workload, "open", marker, str(n))
    assert res.returncode == 0, res.stderr
    printed = len(event_lines(res.stdout))
    lost = lost_events(res.stderr)
    assert printed + lost == n, (printed, lost, res.stderr)
    assert lost > 0, "a one-page ring buffer should overflow on this burst"


@pytest.mark.root
def test_json_events_follow_the_schema(workload, tmp_path):
    marker = str(tmp_path / "j")
    res = pytracekit("trace", "--json", f'{OPENAT} (args->filename == "{marker}") "%s|%d", '
                     "args->filename, args->flags", "--", workload, "open", marker, "2")
    assert res.returncode == 0, res.stderr
    objs = validated_json_lines("trace", res.stdout)
    events = [o for o in objs if o["type"] == "event"]
    assert len(events) == 2
    assert events[0]["message"] == f"{marker}|{0o100}"        # O_RDONLY|O_CREAT
    assert events[0]["args"] == [marker, 0o100] and events[0]["comm"] == "workload"
    assert objs[-1]["type"] == "loss" and objs[-1]["lost_events"] == 0


@pytest.mark.root
@pytest.mark.parametrize("probe, message", [
    ('c:malloc(size_t size) (size > )',
     "filter: unexpected end of expression at column 8: size > "),
    ('c:malloc(size_t size) (size > 1; system("id"))',
     "filter: unexpected ';' (one expression, not statements) at column 9: size > 1; "),
    ('c:malloc(size_t size) "%d %s", size',
     'format: 2 conversions but 1 argument: "%d %s", size'),
    ('c:malloc(size_t size) "%s", size',
     'format: %s needs a string but argument 1 is a number: "%s", size'),
    ('c:malloc (retval == 0)', "filter: retval exists only on return probes (r:...) at column 1"),
    (f'{OPENAT} (args->name == "x")',
     "filter: the tracepoint has no field 'name' (fields: __syscall_nr, dfd, filename"),
    ('c:malloc(sizet size)', "signature of c:malloc: unknown type 'sizet'"),
])
def test_malformed_probes_are_one_line_and_exit_2(probe, message):
    line = one_error_line(pytracekit("trace", probe), 2)
    assert line.startswith("pytracekit trace: error: ")
    assert message in line, line


@pytest.mark.root
def test_pid_option_traces_only_that_process(workload, tmp_path):
    from probe_helpers import traced_pid_run
    marker = str(tmp_path / "p")
    out, err, rc = traced_pid_run(["trace", f'{OPENAT} "%s", args->filename'], workload,
                                  ["open", marker, "4"], tmp_path)
    assert rc == 0, err
    # Only the opens after the go-file: the loader's opens came before attaching.
    assert [line.split()[-1] for line in event_lines(out)] == [marker] * 4


@pytest.mark.root
def test_wildcards_expand_to_one_probe_per_function(workload):
    res = pytracekit("trace", f'{workload}:stack_path_* "%d", arg1', "--", workload, "stacks", "2")
    assert res.returncode == 0, res.stderr
    seen = [tuple(line.split()[3:]) for line in event_lines(res.stdout)]
    assert sorted(seen) == sorted([("stack_path_a", "0"), ("stack_path_a", "1"),
                                   ("stack_path_b", "0"), ("stack_path_b", "1"),
                                   ("stack_path_b", "2"), ("stack_path_b", "3")])


@pytest.mark.root
@pytest.mark.parametrize("mode", [["stacks", "1"], ["stackswait", "1", "300"]])
def test_user_stacks_are_symbolized_per_event(workload, mode):
    # `stacks` exits at once: its frames are named from build ids after it is gone.
    res = pytracekit("trace", "-U", f"{workload}:stack_leaf", "--", workload, *mode)
    assert res.returncode == 0, res.stderr
    blocks = [b for b in res.stdout.split("\n\n") if "stack_leaf" in b]
    stacks = [[line.strip() for line in b.splitlines() if line.startswith("        ")]
              for b in blocks]
    assert len(stacks) == 3, res.stdout
    assert [s[:3] for s in stacks] == [["stack_leaf", "stack_path_a", "main"]] + \
        [["stack_leaf", "stack_path_b", "main"]] * 2


@pytest.mark.root
def test_kernel_function_probe_says_what_is_missing_and_what_works():
    line = one_error_line(pytracekit("trace", "r::do_sys_open (retval < 0)"), 1)
    assert "no kprobes" in line and "t:syscalls:sys_enter_openat" in line


@pytest.mark.root
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_stream_of_events_ends_the_run_cleanly(workload, tmp_path, sig):
    marker = str(tmp_path / "s")
    burst = subprocess.Popen([workload, "open", marker, "100000000"])   # killed below
    try:
        with Tool("trace", f'{OPENAT} (args->filename == "{marker}") "%s", args->filename') as tool:
            assert wait_until(lambda: False, timeout=0.5) is False   # let events flow
            out, err = tool.stop(sig, timeout=20)
    finally:
        burst.kill()
        burst.wait()
    assert tool.returncode == 0, err
    assert len(event_lines(out)) > 0 and "Traceback" not in err
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_name_and_message_filters_choose_what_is_printed(workload, tmp_path):
    probe = f'{OPENAT} "%s", args->filename'
    with Tool("trace", "-n", "worklo", "-f", str(tmp_path), probe) as tool:
        run_workload(workload, "open", f"{tmp_path}/a", "2")
        run_workload(workload, "open", f"{tmp_path}/b", "3")
        subprocess.run(["cat", f"{tmp_path}/a"], check=True)
        out, err = tool.stop()
    assert tool.returncode == 0, err
    assert [line.split()[-1] for line in event_lines(out)] == \
        [f"{tmp_path}/a"] * 2 + [f"{tmp_path}/b"] * 3
    with Tool("trace", "-T", "-n", "cat", "-f", str(tmp_path), probe) as tool:
        run_workload(workload, "open", f"{tmp_path}/a", "2")
        subprocess.run(["cat", f"{tmp_path}/a"], check=True)
        out, err = tool.stop()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "TID", "COMM", "FUNC", "-"]
    assert [line.split()[3:] for line in lines[1:]] == [["cat", "sys_enter_openat",
                                                         f"{tmp_path}/a"]]
    assert re.fullmatch(r"\d\d:\d\d:\d\d", lines[1].split()[0])



@pytest.mark.root
def test_usdt_arguments_of_a_running_python(tmp_path):
    from usdt_helpers import PYTHON, traced_python_gc
    probe = f'u:{PYTHON}:gc__start (arg1 == 2) "generation %d", arg1'
    out, err, rc = traced_python_gc(["trace", probe], 7, tmp_path)
    assert rc == 0, err
    assert [line.split()[3:] for line in event_lines(out)] == [["gc__start", "generation", "2"]] * 7


@pytest.mark.root
def test_tid_option_traces_only_that_thread(workload, tmp_path):
    marker, go = str(tmp_path / "t"), tmp_path / "go"
    proc = subprocess.Popen([workload, "--go-file", str(go), "open", marker, "3"])
    try:
        with Tool("trace", "-L", str(proc.pid), f'{OPENAT} "%s", args->filename') as tool:
            run_workload(workload, "open", marker, "2")      # another process: not traced
            go.touch()
            assert proc.wait(timeout=30) == 0
            out, err = tool.stop()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert tool.returncode == 0, err
    assert [(line.split()[1], line.split()[-1]) for line in event_lines(out)] == \
        [(str(proc.pid), marker)] * 3


@pytest.mark.root
def test_an_unreadable_string_is_marked_and_counted(workload, tmp_path):
    """%s of a path in a page the workload never touched (BPF cannot read it
    at sys_enter): [unreadable], never "", and counted in the loss line."""
    target = str(tmp_path / "target")
    probe = f'{OPENAT} (args->flags == 0) "%s", args->filename'    # O_RDONLY opens
    res = pytracekit("trace", probe, "--", workload, "unreadable", "5", target)
    assert res.returncode == 0, res.stderr
    paths = [line.split()[-1] for line in event_lines(res.stdout)]
    assert paths.count("[unreadable]") == 5 and "" not in paths
    assert re.search(r"\b5 strings unreadable \(not paged in", res.stderr), res.stderr



# The tool's own main thread, renamed so that -n picks out its events alone.
SELF_NAME = "ptkselftrace"
RENAMED = ("import ctypes, runpy, sys; "
           f"ctypes.CDLL(None).prctl(15, b'{SELF_NAME}', 0, 0, 0); "   # PR_SET_NAME
           "sys.argv[0] = 'pytracekit'; runpy.run_module('pytracekit', run_name='__main__')")


def renamed_trace(*args: str) -> tuple[int, list[dict]]:
    """trace ARGS run under SELF_NAME: its pid and the events it printed."""
    proc = subprocess.Popen([sys.executable, "-c", RENAMED, "trace", "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return proc.pid, [o for o in validated_json_lines("trace", out) if o["type"] == "event"]


@pytest.mark.root
def test_trace_leaves_itself_out_unless_asked():
    # trace's reader waits in epoll (libbpf's ring buffer poll) all the time:
    # with -S those calls are traced, without it none ever is (SELF_PID).
    probes = ["t:syscalls:sys_enter_epoll_wait", "t:syscalls:sys_enter_epoll_pwait"]
    pid, events = renamed_trace("-S", "-M", "3", "-n", SELF_NAME, *probes)
    assert len(events) == 3 and {e["pid"] for e in events} == {pid}, events
    _, events = renamed_trace("--duration", "2", "-n", SELF_NAME, *probes)
    assert events == []

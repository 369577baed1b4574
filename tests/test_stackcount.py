"""stackcount on the ground-truth workload: exactly the two stacks that reach
stack_leaf, counted N and 2N and symbolized; kernel stacks from a tracepoint;
losses printed."""
import pytest

from conftest import pytracekit, pytracekit_probes_left
from probe_helpers import one_error_line, traced_pid_run, validated_json_lines

pytestmark = pytest.mark.root
N = 25


def parse_text(out: str) -> list[tuple[list[str], int]]:
    """BCC's blocks: frame lines (leaf first), optional 'comm [pid]', the count."""
    blocks = []
    for block in out.strip().split("\n\n"):
        lines = [l.strip() for l in block.strip().splitlines()]
        blocks.append((lines[:-1], int(lines[-1])))
    return blocks


def caller_chain(frames: list[str]) -> list[str]:
    """The frames from the leaf up to main (libc's start-up frames vary)."""
    return frames[:frames.index("main") + 1]


def test_leaf_has_exactly_its_two_stacks_counted_n_and_2n(workload, tmp_path):
    out, err, rc = traced_pid_run(["stackcount", f"{workload}:stack_leaf"], workload,
                                  ["stackswait", str(N), "400"], tmp_path)
    assert rc == 0, err
    blocks = parse_text(out)
    assert len(blocks) == 2, out
    (frames_a, count_a), (frames_b, count_b) = blocks   # smallest count first, as BCC
    assert (count_a, count_b) == (N, 2 * N)
    assert caller_chain(frames_a) == ["stack_leaf", "stack_path_a", "main"]
    assert caller_chain(frames_b) == ["stack_leaf", "stack_path_b", "main"]
    # -p implies per-process output: the process line comes last
    assert frames_a[-1].startswith("workload [") and frames_b[-1].startswith("workload [")
    assert "Detaching..." in err and "WARNING" not in err
    assert pytracekit_probes_left() == []


def test_folded_output_for_a_short_lived_command(workload):
    # The command is gone before the stacks are read: frames are named by build id.
    res = pytracekit("stackcount", "-f", "-U", f"{workload}:stack_leaf", "--",
                     workload, "stacks", str(N))
    assert res.returncode == 0, res.stderr
    lines = sorted(res.stdout.strip().splitlines(), key=lambda l: int(l.rsplit(" ", 1)[1]))
    assert len(lines) == 2
    assert lines[0].endswith(f";main;stack_path_a;stack_leaf {N}")
    assert lines[1].endswith(f";main;stack_path_b;stack_leaf {2 * N}")
    assert "Tracing" not in res.stderr        # folded output is for pipes
    assert "without a symbol" not in res.stderr


def test_tracepoint_kernel_stacks_with_delimiter(workload, tmp_path):
    res = pytracekit("stackcount", "-d", "-P", "t:syscalls:sys_enter_openat", "--",
                     workload, "open", str(tmp_path / "f"), "3")
    assert res.returncode == 0, res.stderr
    # the text form opens with BCC's line, once, on stderr
    opening = 'Tracing 1 function for "t:syscalls:sys_enter_openat"... Hit Ctrl-C to end.'
    assert res.stderr.splitlines().count(opening) == 1, res.stderr
    assert "Tracing" not in res.stdout
    frames = [f for block, _ in parse_text(res.stdout) for f in block]
    assert "do_syscall_64" in frames
    assert "--" in frames                          # between kernel and user frames
    assert sum(c for _, c in parse_text(res.stdout)) >= 3


def test_json_follows_the_schema(workload):
    res = pytracekit("stackcount", "--json", "-U", f"{workload}:stack_leaf", "--",
                     workload, "stacks", "2")
    assert res.returncode == 0, res.stderr
    assert "Tracing" not in res.stderr        # JSON is for programs
    objs = validated_json_lines("stackcount", res.stdout)
    stacks = sorted((o for o in objs if o["type"] == "stack"), key=lambda o: o["value"])
    assert [o["value"] for o in stacks] == [2, 4]
    assert [f["name"] for f in stacks[0]["frames"]][-2:] == ["stack_path_a", "stack_leaf"]
    assert objs[-1]["type"] == "loss"


def test_unstored_stacks_are_counted_and_printed(workload):
    res = pytracekit("stackcount", "-f", "-U", "--stack-storage", "1", f"{workload}:stack_leaf",
                     "--", workload, "stackswait", str(N), "400")
    assert res.returncode == 0, res.stderr
    assert "[stack not stored]" in res.stdout
    assert "stacks not stored (stack map full or collision)" in res.stderr


def test_full_count_map_is_counted_and_printed(workload):
    res = pytracekit("stackcount", "-f", "-U", "--max-stacks", "1", f"{workload}:stack_leaf",
                     "--", workload, "stackswait", str(N), "400")
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.strip().splitlines()) == 1
    assert f"WARNING: {2 * N} updates dropped (map full)" in res.stderr


@pytest.mark.parametrize("args, status, words", [
    (["-K", "-U", "c:malloc"], 2, "-K and -U are mutually exclusive"),
    (["vfs_read"], 1, "no kprobes"),
    (["t:sched:no_such_event"], 1, "unknown tracepoint sched:no_such_event"),
    (["c:no_such_function_zz*"], 1, "no function in"),
    (["/no/such/file:main"], 1, "no such binary or library"),
    (["-p", "999999", "c:malloc"], 1, "no process with pid 999999"),
    (["t:sched"], 2, "bad probe spec"),
])
def test_errors_are_one_line(args, status, words):
    line = one_error_line(pytracekit("stackcount", *args), status)
    assert words in line


def test_build_id_reader_agrees_with_readelf(workload):
    import subprocess
    from pytracekit.symbolize.buildid import read_build_id
    notes = subprocess.run(["readelf", "-n", workload], capture_output=True, text=True).stdout
    expected = notes.split("Build ID:")[1].split()[0]
    assert read_build_id(workload).hex() == expected
    assert read_build_id("/etc/passwd") is None


def test_cpu_filter(workload_nofp):
    # taskset execs the workload (built without frame pointers) in the held
    # command's process: held again once ld.so has mapped the new program's
    # libraries, its first calls already unwind whole, from _start
    args = ["-f", "-U", f"{workload_nofp}:stack_leaf", "--", "taskset", "-c", "1",
            workload_nofp, "stacks", "3"]
    assert pytracekit("stackcount", "-c", "0", *args).stdout.strip() == ""
    res = pytracekit("stackcount", "-c", "1", *args)
    root = "_start;__libc_start_main;__libc_start_call_main;main"
    assert res.stdout.strip().splitlines() == [f"{root};stack_path_a;stack_leaf 3",
                                               f"{root};stack_path_b;stack_leaf 6"], res.stdout


def _leaf_stacks_in_process(workload, n: int, announce: bool = False):
    """stackcount.start() on stack_leaf of `workload stacks n`, in this process:
    (probe kinds, perf-event and bpf_link fds added while attached, caller
    chains with their counts)."""
    from probe_helpers import open_fds
    from pytracekit.tools import stackcount
    perf, link = "anon_inode:[perf_event]", "anon_inode:bpf_link"
    before = open_fds(perf), open_fds(link)
    # frame pointers: the CFI unwinder's own tracepoints and entry stop would add
    # fds (its stacks are test_event_unwind's)
    counter = stackcount.start(f"{workload}:stack_leaf", command=(workload, "stacks", str(n)),
                               kernel=False, announce=announce, unwind="fp")
    try:
        kinds = [p.kind for p in counter.tracer.prog.probes]
        added = open_fds(perf) - before[0], open_fds(link) - before[1]
        assert counter.tracer.run(duration=30) == "exited"
        chains = sorted((tuple(caller_chain([f.name for f in reversed(s.stack)])), s.value)
                        for s in counter.read().samples)
    finally:
        counter.close()
    assert (open_fds(perf), open_fds(link)) == before
    return kinds, added, chains


# The held command's FILTER_PID passes from its exec on (FILTER_AFTER_EXEC in
# pytracekit.h): one raw tracepoint on sched_process_exec, a bpf_link fd.
EXEC_GATE = 1

LEAF_CHAINS = [(("stack_leaf", "stack_path_a", "main"), N),
               (("stack_leaf", "stack_path_b", "main"), 2 * N)]


def test_uprobes_go_through_one_uprobe_multi_link(workload, capfd):
    from pytracekit.kernel import features
    if not features.uprobe_multi_available()[0]:
        pytest.skip(f"no uprobe_multi links here: {features.uprobe_multi_available()[1]}")
    kinds, added, chains = _leaf_stacks_in_process(workload, N, announce=True)
    assert (kinds, added) == (["uprobe_multi"], (0, 1 + EXEC_GATE))
    assert chains == LEAF_CHAINS
    # start(announce=True): BCC's line on stderr, once
    opening = f'Tracing 1 function for "{workload}:stack_leaf"... Hit Ctrl-C to end.'
    assert capfd.readouterr().err.splitlines().count(opening) == 1


def test_without_uprobe_multi_the_uprobe_is_a_perf_event(workload, monkeypatch, capfd):
    from pytracekit.kernel import features
    monkeypatch.setattr(features, "uprobe_multi_available", lambda: (False, "forced off"))
    kinds, added, chains = _leaf_stacks_in_process(workload, N)
    assert (kinds, added) == (["uprobe"], (1, EXEC_GATE))
    assert chains == LEAF_CHAINS
    assert "Tracing" not in capfd.readouterr().err     # start(announce=False)

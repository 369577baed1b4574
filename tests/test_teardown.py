"""SIGTERM (what `kill` and service managers send) ends a run cleanly: results
printed, exit 0, nothing left attached. funccount, profile, trace and others test
this in their own files; these are the families that did not."""
import re
import signal
import subprocess
import time

import pytest

from conftest import Tool, pytracekit_probes_left

pytestmark = pytest.mark.root

N, SIZE = 5, 2000


def _stopped_cleanly(tool: Tool, out: str, err: str) -> None:
    assert tool.returncode == 0, err
    assert "Traceback" not in err
    assert pytracekit_probes_left() == []


def test_offcputime_with_a_command(workload):
    # The command would sleep 100 x 20 ms; SIGTERM ends the tool (and it the command).
    with Tool("offcputime", "--folded", "--", workload, "sleep", "100", "20") as tool:
        time.sleep(0.3)
        out, err = tool.stop(signal.SIGTERM, timeout=30)
    _stopped_cleanly(tool, out, err)
    sleeper = [line for line in out.splitlines() if ";sleeper;" in line]
    assert sleeper and all(int(line.rsplit(" ", 1)[1]) > 0 for line in sleeper), out


def test_top_batch(workload):
    with Tool("top", "-b", "--interval", "0.1") as tool:
        time.sleep(0.35)          # two or three refreshes
        out, err = tool.stop(signal.SIGTERM, timeout=30)
    _stopped_cleanly(tool, out, err)
    assert re.search(r"^top - \d\d:\d\d:\d\d ", out, re.M), out
    assert "    PID  THR COMM" in out


def test_memleak_of_a_pid(workload, tmp_path):
    go = tmp_path / "go"
    proc = subprocess.Popen([workload, "--go-file", str(go), "leak", str(N), str(SIZE)])
    try:
        with Tool("memleak", "-o", "0", "--combined-only", "-p", str(proc.pid)) as tool:
            go.touch()
            time.sleep(0.2)      # the leaks are done; the workload sleeps 300 ms more
            out, err = tool.stop(signal.SIGTERM, timeout=30)
    finally:
        proc.wait()
    _stopped_cleanly(tool, out, err)
    assert f"\t{N * SIZE} bytes in {N} allocations from stack" in out.splitlines(), out


def _perf_event_fds() -> set[int]:
    import os
    out = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[perf_event]":
                out.add(int(name))
        except OSError:
            pass
    return out


def test_many_probes_are_all_detached_by_the_concurrent_close(workload, monkeypatch):
    """Program.close() closes tracepoint and uprobe events from threads before
    BCC's cleanup: every one must be gone, and BCC's books must agree. (Per
    probe uprobes, as BCC attaches them where uprobe_multi links are missing.)"""
    from pytracekit.kernel import features
    from pytracekit.tools import funccount
    monkeypatch.setattr(features, "uprobe_multi_available", lambda: (False, "forced off"))
    before = _perf_event_fds()
    running = funccount.start("t:syscalls:sys_enter_get*", announce=False)
    uprobes = funccount.start(f"{workload}:*_*", announce=False)
    bpfs = [running.tracer.prog.bpf, uprobes.tracer.prog.bpf]
    assert len(bpfs[0].tracepoint_fds) >= 4 and len(bpfs[1].uprobe_fds) >= 4
    assert len(_perf_event_fds() - before) >= 8
    running.close()
    uprobes.close()
    assert _perf_event_fds() - before == set()
    assert all(not b.tracepoint_fds and not b.uprobe_fds for b in bpfs)
    assert pytracekit_probes_left() == []


def test_profile_closes_its_tracepoints_while_it_reads_and_names(workload):
    """The end of a profile run (profile.command): sampling stopped, any classic
    tracepoint's events closed from a thread while the stacks are read and named
    (profile's sched probes are raw tracepoints now, whose detach does not wait
    for grace periods: it has none), then close(): every perf event gone and
    BCC's books agree; the read has the run's stacks. (test_startup checks the
    kernel names read in the background.)"""
    from pytracekit.engine.runner import run_until_done
    from pytracekit.tools import profile
    before = _perf_event_fds()
    session = profile.start(command=(workload, "spin", "0.3"), frequency=499, python=False)
    try:
        bpf = session.prog.bpf
        assert not bpf.tracepoint_fds
        assert {b"sched_process_exec", b"sched_process_exit", b"sched_process_fork",
                b"sched_process_free"} <= set(bpf.raw_tracepoint_fds)
        run_until_done(session.target, poll=session.poll)
        session.stop_sampling()
        session.prog.detach_tracepoints_in_background()
        samples = session.read().samples
    finally:
        session.close()
    assert _perf_event_fds() - before == set()
    assert not bpf.tracepoint_fds
    assert pytracekit_probes_left() == []
    names = [[f.name for f in s.stack] for s in samples]
    assert any(n[i:i + 2] == ["spin_outer", "spin_inner"] for n in names
               for i in range(len(n))), names
    assert session.symbolizer._kernel_warm is not None   # started at the first poll

"""profile's first samples of a process it did not start (bpf/ptk_first_samples.h,
pytracekit/collect/first_samples.py): taken before the unwinder has loaded the
process, they are copied (registers and the top of the stack) and unwound in
user space with the same CFI tables once it is, instead of counted as the
kernel's frame-pointer walk (wrong in code built without frame pointers)."""
import os
import re
import signal
import subprocess

import pytest

from conftest import Tool, wait_until
from stack_checks import names, parse_json

ROOT_PATH = "_start;__libc_start_main;__libc_start_call_main;main"
SPIN = f"{ROOT_PATH};spin_outer;spin_inner"
SPIN_TAILS = ["", ";clock_ns", ";clock_ns;_init", ";clock_ns;clock_gettime@plt",
              ";clock_ns;clock_gettime", ";clock_ns;clock_gettime;clock_gettime"]
NOT_LOADED = "[frame pointers: process not loaded yet]"
PER_PROCESS = 32   # FIRST_SAMPLES_PER_PROC


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 once gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


@pytest.mark.root
def test_samples_before_the_load_are_unwound_whole_from_their_copy(workload_nofp):
    # sh (-p, loaded before sampling starts) execs the workload: a new program,
    # not loaded until its first sample has announced it and the tool has read
    # its maps. The tool is stopped meanwhile, so that every one of the
    # workload's samples until well past the copy bound precedes its load
    # (~60 at 199 Hz in 300 ms of its CPU): the first PER_PROCESS are copies,
    # the rest the frame-pointer walk (marked, counted), then the kernel's own.
    sh = subprocess.Popen(["sh", "-c", f"read go; exec {workload_nofp} spincpu 600"],
                          stdin=subprocess.PIPE)
    try:
        with Tool("profile", "-F", "199", "--json", "--verbose", "-p", str(sh.pid)) as tool:
            os.kill(tool.proc.pid, signal.SIGSTOP)
            try:
                sh.stdin.write(b"go\n")
                sh.stdin.close()
                assert wait_until(lambda: _comm(sh.pid) == "workload-nofp" and
                                  _cpu_ticks(sh.pid) >= os.sysconf("SC_CLK_TCK") * 3 // 10,
                                  timeout=60)
            finally:
                os.kill(tool.proc.pid, signal.SIGCONT)
            out, err = tool.wait(timeout=180)   # -p: ends when the workload exits
        assert tool.returncode == 0, err
    finally:
        sh.kill()
        sh.wait()
    _, stacks, loss = parse_json(out, "profile")
    mine = [s for s in stacks if s["pid"] == sh.pid and s["comm"] == "workload-nofp"]
    marked = sum(s["value"] for s in stacks if NOT_LOADED in names(s, "marker"))
    spin = {}
    for s in mine:
        if NOT_LOADED not in names(s, "marker"):
            user = ";".join(names(s, "user"))
            if "spin_inner" in user:
                spin[user] = spin.get(user, 0) + s["value"]
    # copies and the kernel's own unwinding alike: exact from _start down
    allowed = {SPIN + tail for tail in SPIN_TAILS}
    assert spin and set(spin) <= allowed, set(spin) - allowed
    copied = re.search(r"first samples: (\d+) copied before their process was loaded, "
                       r"(\d+) unwound from the copy", err)
    assert copied, err
    # the workload's first PER_PROCESS samples (sh was loaded before any), all
    # unwound (one in ld.so's start-up stops where the kernel's walk would:
    # counted in unwind_incomplete; the others are whole, checked above)
    assert int(copied[1]) == PER_PROCESS and int(copied[2]) == PER_PROCESS, err
    assert sum(spin.values()) >= PER_PROCESS - 1, spin
    # the walks past the bound are marked and counted; the copies made whole are not
    assert marked > 0 and loss["stack_errors"] == 0, (marked, loss)
    assert loss["unwind_fallback"] == marked, (loss, marked)

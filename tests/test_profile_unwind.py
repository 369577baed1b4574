"""profile's in-kernel unwinder (bpf/ptk_unwind.h, pytracekit/symbolize/unwinder.py):
exact stacks of the workload built without frame pointers, from `_start`
down, and whole stacks of Debian's own binaries (built without frame
pointers: a frame-pointer walk reaches `__libc_start_call_main` in 0% of
their samples)."""
import contextlib
import os
import random
import re
import shutil
import string
import subprocess
from collections import Counter

import pytest

from conftest import Tool, pytracekit
from stack_checks import names, parse_json

ROOT_PATH = "_start;__libc_start_main;__libc_start_call_main;main"
SPIN = f"{ROOT_PATH};spin_outer;spin_inner"
EXITING = "_start;__libc_start_main;__libc_start_call_main;exit;"
# below spin_inner: its clock read, the PLT stub (named `_init` until PLT stubs get
# their own names), the libc wrapper, the vDSO's function
SPIN_TAILS = ["", ";clock_ns", ";clock_ns;_init", ";clock_ns;clock_gettime@plt",
              ";clock_ns;clock_gettime", ";clock_ns;clock_gettime;clock_gettime"]


# spin's stacks for 0.6 s of the workload's CPU time: ~120 samples at 199 Hz
# however loaded the machine is (spin's wall-clock seconds gave 16-29 at a load of 20)
SPIN_CPU = ["spincpu", "600"]


def _folded_of_pid(binary: str, args: list[str], tmp_path, env: dict | None = None) -> Counter:
    """`profile -U -f -p PID` of a process that starts once the tool is ready
    (its tables are loaded before sampling starts: no frame-pointer fallback)."""
    go = tmp_path / "go"
    proc = subprocess.Popen([binary, "--go-file", str(go), *args], env={**os.environ,
                                                                          **(env or {})})
    try:
        # no duration: -p ends the profile when the process exits, so every
        # phase of the workload is sampled however loaded the machine is
        with Tool("profile", "-F", "199", "-U", "-f", "-p", str(proc.pid), env=env) as tool:
            go.touch()
            out, err = tool.wait()
    finally:
        proc.kill()
        proc.wait()
    assert tool.returncode == 0, err
    stacks = Counter()
    for line in out.splitlines():
        stack, count = line.rsplit(" ", 1)
        user = stack.partition(";")[2]
        # before the go file it sleeps in usleep; while it exits it runs libc's exit
        # handlers (from main's return) or has no user stack, or only its leaf in
        # _exit (the kernel has already released its memory): none is the work
        if (user and "wait_for_file" not in user and not user.startswith(EXITING)
                and user != "_exit"):
            stacks[user] += int(count)
    stacks.stderr = err
    return stacks


def _assert_exact_spin(stacks: Counter) -> None:
    allowed = {SPIN + tail for tail in SPIN_TAILS}
    assert sum(stacks.values()) >= 30, stacks   # ~120 (SPIN_CPU)
    assert set(stacks) <= allowed, set(stacks) - allowed
    assert stacks[SPIN] >= 0.5 * sum(stacks.values())


@pytest.mark.root
def test_spin_without_frame_pointers_is_exact_from_start(workload_nofp, tmp_path):
    _assert_exact_spin(_folded_of_pid(workload_nofp, SPIN_CPU, tmp_path))


@pytest.mark.root
def test_stacks_mode_without_frame_pointers_is_exact(workload_nofp, tmp_path):
    stacks = _folded_of_pid(workload_nofp, ["stacks", "50000000"], tmp_path)
    allowed = {f"{ROOT_PATH}{tail}" for tail in
               ["", ";stack_path_a", ";stack_path_a;stack_leaf", ";stack_path_b",
                ";stack_path_b;stack_leaf"]}
    assert set(stacks) <= allowed, set(stacks) - allowed
    a = sum(v for k, v in stacks.items() if "stack_path_a" in k)
    b = sum(v for k, v in stacks.items() if "stack_path_b" in k)
    assert a >= 5 and b > a, stacks   # path b runs twice as often as path a


@pytest.mark.root
def test_stripped_binary_is_named_from_its_build_id_debug_file(workload_stripped, tmp_path):
    stacks = _folded_of_pid(workload_stripped.path, SPIN_CPU, tmp_path,
                            env=workload_stripped.env)
    _assert_exact_spin(stacks)


@pytest.mark.root
def test_binary_with_only_debug_frame_is_exact_from_start(workload_debug_frame, tmp_path):
    # no .eh_frame at all (not even the C runtime's for _start): the walk
    # reaches _start by .debug_frame and stops there, counted as incomplete
    stacks = _folded_of_pid(workload_debug_frame, SPIN_CPU, tmp_path)
    _assert_exact_spin(stacks)
    incomplete = re.search(r"(\d+) user stacks incomplete", stacks.stderr)
    assert incomplete and int(incomplete[1]) >= sum(stacks.values()), stacks.stderr


@pytest.mark.root
def test_stripped_binary_unwinds_by_its_debug_files_debug_frame(workload_debug_frame_stripped,
                                                                tmp_path):
    work = workload_debug_frame_stripped
    _assert_exact_spin(_folded_of_pid(work.path, SPIN_CPU, tmp_path, env=work.env))


@pytest.mark.root
def test_frame_pointer_option_keeps_the_kernel_walk(workload):
    # the frame-pointer build: the kernel's walk has no frame for _start, CFI has
    for mode, has_start in (("fp", False), ("dwarf", True)):
        res = pytracekit("profile", "-F", "199", "-U", "-f", "--unwind", mode, "--", workload,
                         "spin", "0.5")
        assert res.returncode == 0, res.stderr
        top = max(res.stdout.splitlines(), key=lambda l: int(l.rsplit(" ", 1)[1]))
        assert top.rsplit(" ", 1)[0].endswith(";main;spin_outer;spin_inner"), res.stdout
        assert (";_start;" in top) == has_start, top


def _reach(command: list[str], comm: str) -> tuple[int, int, int]:
    """(samples of comm, of them with __libc_start_call_main, of those rooted
    at the program's own _start). Not ld.so's: a sample inside the exec, once
    the program's name is set, has ld.so's entry as its user pc (its one frame,
    `_start` of ld-linux-x86-64.so.2: seen at a load of 20). A sample in the
    program's constructors (__libc_start_main's call_init, before main's
    caller) is rooted but not counted whole."""
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--", *command, timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    mine = [s for s in stacks if s["comm"] == comm]
    total = sum(s["value"] for s in mine)
    whole = [s for s in mine if "__libc_start_call_main" in names(s, "user")]
    rooted = sum(s["value"] for s in whole
                 if [(f["name"], f["module"]) for f in s["frames"] if f["kind"] == "user"][:1]
                 == [("_start", comm)])
    return total, sum(s["value"] for s in whole), rooted


def _debian(path: str) -> str:
    if not os.path.exists(path):
        pytest.skip(f"{path} is not installed")
    return path


@pytest.mark.root
def test_debian_xz_stacks_are_whole(tmp_path):
    xz = _debian("/usr/bin/xz")
    rng = random.Random(12)   # words drawn at random: xz -9 needs ~2 s for 1.2 MB
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
             for _ in range(5000)]
    data = tmp_path / "words"
    data.write_text(" ".join(rng.choice(words) for _ in range(190000)))
    command = [xz, "-9", "-T1", "-k", "-f", str(data)]
    total, whole, _ = _reach(command, "xz")
    assert total >= 50 and whole >= 0.95 * total, (total, whole)
    reference = _perf_dwarf_reach(command, tmp_path)
    if reference is not None:   # perf record --call-graph dwarf on the same run
        assert whole / total >= reference - 0.03, (whole / total, reference)


def _perf_dwarf_reach(command: list[str], tmp_path) -> float | None:
    """Share of perf's own DWARF-unwound samples that reach __libc_start_call_main."""
    if shutil.which("perf") is None:
        return None
    data = tmp_path / "perf.data"
    rec = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", "199",
                          "--call-graph", "dwarf,8192", "-o", str(data), "--", *command],
                         capture_output=True, timeout=120)
    if rec.returncode != 0:
        return None
    script = subprocess.run(["perf", "script", "-i", str(data), "-F", "comm,ip,sym"],
                            capture_output=True, text=True, timeout=120).stdout
    samples = [b for b in script.strip().split("\n\n") if b.strip()]
    return sum("__libc_start_call_main" in b for b in samples) / len(samples) if samples \
        else None


@pytest.mark.root
def test_debian_python_stacks_are_whole():
    python = _debian("/usr/bin/python3.11")
    loop = "import time\nt = time.time()\nwhile time.time() - t < 2.5: pass"
    total, whole, rooted = _reach([python, "-c", loop], "python3.11")
    assert total >= 50 and whole >= 0.95 * total and rooted == whole, (total, whole, rooted)


@pytest.mark.root
def test_debian_bash_stacks_are_whole():
    bash = _debian("/usr/bin/bash")
    loop = "i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done"
    total, whole, rooted = _reach([bash, "-c", loop], "bash")
    assert total >= 50 and whole >= 0.95 * total and rooted == whole, (total, whole, rooted)


@pytest.mark.root
def test_forked_child_unwinds_with_its_parents_mappings(workload_nofp):
    # the child is copied its parent's mappings in the kernel at fork: whole
    # stacks from its first sample, before user space has looked at it
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--", workload_nofp, "forkchild",
                     "400")
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    allowed = {f"{ROOT_PATH};child_spin;spin_inner{tail}" for tail in SPIN_TAILS}
    child = [s for s in stacks if "child_spin" in names(s)]
    assert sum(s["value"] for s in child) >= 10 and len({s["pid"] for s in child}) == 1
    assert {";".join(names(s, "user")) for s in child} <= allowed


@pytest.mark.root
def test_programs_the_command_runs_unwind_from_their_first_sample(workload_nofp):
    # sh forks and execs the workload twice: each new program is held once
    # ld.so has mapped its libraries, until its mappings are loaded, so none of
    # its samples takes the frame-pointer walk (which gives no caller above
    # child_spin in this binary); before, its first 10-100 ms did
    script = f"{workload_nofp} spinchild 300; {workload_nofp} spinchild 300"
    res = pytracekit("profile", "-F", "199", "-U", "--json", "--verbose", "--", "sh", "-c",
                     script)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    allowed = {f"{ROOT_PATH};child_spin;spin_inner{tail}" for tail in SPIN_TAILS}
    child = [s for s in stacks if "spin_inner" in names(s)]
    assert sum(s["value"] for s in child) >= 10 and len({s["pid"] for s in child}) == 2
    assert {";".join(names(s, "user")) for s in child} <= allowed
    # sh and the two workloads: one hold each (the ld.so hook: no dlopen here)
    assert re.search(r"; 3 holds$", res.stderr, re.M), res.stderr


MISSED = {"[Missed User Stack]", "[Missed Kernel Stack]"}
NOT_LOADED = "[frame pointers: process not loaded yet]"


@pytest.mark.root
def test_storm_of_short_processes_loses_no_stacks(workload):
    # 2000 exec'd processes, each new to profile: until user space has loaded
    # one, its user stack is the kernel's frame-pointer walk (its own ASLR
    # addresses). In a stack map's buckets 12% of these samples lost a stack
    # (8x the buckets: 0.8%); stored by hash, none may be lost.
    res = pytracekit("profile", "-F", "999", "--json", "--", workload, "storm", "2000", "1",
                     timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, loss = parse_json(res.stdout, "profile")
    total = sum(s["value"] for s in stacks)
    missed = sum(s["value"] for s in stacks if MISSED & set(names(s, "marker")))
    spin = sum(s["value"] for s in stacks if "child_spin" in names(s, "user"))
    assert total >= 1000 and spin >= 100, (total, spin)
    assert missed <= total / 1000 and loss["stack_errors"] <= total / 1000, (missed, loss)
    assert loss["map_full"] == 0, loss
    # stored, and still counted: samples of processes not loaded yet
    assert 0 < loss["unwind_fallback"] < total, loss
    assert "user stacks by frame pointers (process not loaded yet)" in res.stderr
    # each of them rooted in a marker (it may not be whole), and only they are
    marked = sum(s["value"] for s in stacks if NOT_LOADED in names(s, "marker"))
    assert loss["unwind_fallback"] - loss["stack_errors"] <= marked <= loss["unwind_fallback"]
    assert all(names(s)[1] == NOT_LOADED for s in stacks if NOT_LOADED in names(s)), stacks


JIT_PATH = f"{ROOT_PATH};jit_fp_run;jit_fp_stub;jit_callback;spin_inner"
GAP_PATH = f"{ROOT_PATH};fp_gap_run;fp_gap_stub;jit_callback;spin_inner"


@pytest.mark.root
@pytest.mark.alone   # jitfp spins wall-clock time: its samples need the CPU to itself
def test_frame_pointer_code_without_cfi_joins_the_cfi_frames_around_it(workload_nofp, tmp_path):
    # jit_fp_stub: anonymous executable code with a frame-pointer prologue and
    # no CFI, between jit_fp_run and jit_callback (both without frame pointers);
    # then fp_gap_stub: the same code in the binary's .text, where no FDE covers it
    go = tmp_path / "go"
    proc = subprocess.Popen([workload_nofp, "--go-file", str(go), "jitfp", "2000"])
    try:
        with Tool("profile", "-F", "199", "-U", "--json", "-p", str(proc.pid), "3.5") as tool:
            go.touch()
            out, err = tool.wait()
        assert tool.returncode == 0, err
    finally:
        proc.kill()
        proc.wait()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/tmp/perf-{proc.pid}.map")
    _, samples, loss = parse_json(out, "profile")
    stacks = Counter()
    for s in samples:
        user = ";".join(f["name"] for f in s["frames"] if f["kind"] in ("user", "jit"))
        if user and "wait_for_file" not in user:
            stacks[user] += s["value"]
    allowed = {path + tail for path in (JIT_PATH, GAP_PATH) for tail in SPIN_TAILS}
    assert set(stacks) <= allowed, set(stacks) - allowed
    jit = sum(v for k, v in stacks.items() if k.startswith(JIT_PATH))
    gap = sum(v for k, v in stacks.items() if k.startswith(GAP_PATH))
    assert jit >= 30 and gap >= 30 and stacks[JIT_PATH] + stacks[GAP_PATH] >= 0.5 * (jit + gap)
    # a JIT's frame-pointer steps are expected; a step inside a module that has
    # CFI is counted: exactly the gap's samples
    # one per sample through the gap (a sample landing in the stub's own
    # prologue, before its frame is set up, may step once less)
    assert gap - 1 <= loss["unwind_fp_steps"] <= gap, (loss, gap)

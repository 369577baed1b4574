"""The compiled-program cache (pytracekit/engine/progcache.py): a tool run twice gives
the same exact results, the second without compiling; untrusted, corrupt and
unloadable entries mean compiling again, never an error.

"Without compiling" is observed, not mocked: before the second run the
program's BTF header (the vmlinux.h every compile includes) is replaced by
one that stops any compile with an #error, so only a cache hit can attach.

Each test runs on a copy of the workload under a name of its own, system-wide
or on its own processes (-p, `-- COMMAND`: their pid is a map value, so those
programs are cached too), so other processes running the workload cannot add
to the counts."""
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, Tool, pytracekit, pytracekit_probes_left, run_workload
from pytracekit.engine import loader, progcache

N = 25
START_S = 240   # a first (compiling) start of a stack tool took over 60 s on the loaded machine
BROKEN_HEADER = "#error the program cache was expected to make compiling unnecessary\n"


@pytest.fixture
def cache(tmp_path) -> dict[str, str]:
    """A cache of the test's own (built in about a second), so the first run is a miss."""
    return {"PYTRACEKIT_CACHE": str(tmp_path / "cache")}


@pytest.fixture
def target(workload, tmp_path) -> str:
    """The workload under a unique name (its comm too: 15 characters)."""
    path = tmp_path / f"pc{os.getpid() % 100000}{tmp_path.name[-6:]}"[:15]
    shutil.copy2(workload, path)
    return str(path)


@contextlib.contextmanager
def started(*args: str, env: dict):
    """Tool(...) as a context, with a start-up bound for a loaded machine."""
    tool = Tool(*args, env=env).start(timeout=START_S)
    try:
        yield tool
    finally:
        tool.__exit__()


def run(cache: dict, args: list[str], *workload_args: str,
        seen: dict | None = None) -> tuple[str, str]:
    """The tool system-wide, the workload once it is attached, the output;
    `seen["maps"]`: the tool's memory maps once it was attached."""
    with started(*args, "--verbose", env=cache) as tool:
        if seen is not None:
            seen["maps"] = Path(f"/proc/{tool.proc.pid}/maps").read_text()
        run_workload(*workload_args)
        out, err = tool.stop(signal.SIGINT)
    assert tool.returncode == 0, err
    assert "Traceback" not in err
    return out, err


def stored_entry(err: str) -> Path:
    match = re.search(r"program cache: stored \S+ \((\S+)\)", err)
    assert match, err
    return Path(match[1])


def hit_entry(err: str) -> Path:
    match = re.search(r"program cache: hit for \S+ \((\S+)\)", err)
    assert match, err
    return Path(match[1])


def break_compiling(entry: Path) -> None:
    (entry.parent / "vmlinux.h").write_text(BROKEN_HEADER)


def funccount_counts(out: str) -> dict[str, int]:
    lines = out.strip().splitlines()
    assert lines[0].split() == ["FUNC", "COUNT"], out
    return {name: int(count) for name, count in (l.rsplit(None, 1) for l in lines[1:])}


@pytest.mark.root
def test_funccount_uprobe_twice_the_second_from_the_cache(cache, target):
    args = ["funccount", f"{target}:counted_function"]
    compiled, cached = {}, {}
    cache = {**cache, "PYTRACEKIT_STARTUP_TIMES": "1"}   # engine/startup.py
    out1, err1 = run(cache, args, target, "calls", str(N), seen=compiled)
    assert "program cache: miss for funccount" in err1
    entry = stored_entry(err1)
    assert funccount_counts(out1) == {"counted_function": N}
    break_compiling(entry)
    out2, err2 = run(cache, args, target, "calls", str(N), seen=cached)
    assert hit_entry(err2) == entry and "stored" not in err2
    assert out2 == out1
    # Compiling brings libbcc.so and LLVM in; the cached run has only libbcc_bpf.so
    # (pytracekit/kernel/bccload.py), and reads the same counts through it.
    assert "/libbcc.so." in compiled["maps"] and "libLLVM" in compiled["maps"]
    assert "/libbcc_bpf.so." in cached["maps"]
    assert "/libbcc.so." not in cached["maps"] and "libLLVM" not in cached["maps"]
    # Where each start-up went, once, in order, the compile or the cache named
    steps = [re.findall(r"^pytracekit: start-up: (.+) \+[\d.]+ ms \(at [\d.]+\)$", err, re.M)
             for err in (err1, err2)]
    common = ["interpreter started", "command line module imported (click)",
              "tool funccount imported", "funccount: options, probes resolved, program text",
              "funccount: BTF header", "funccount: bcc imported"]
    assert steps[0] == common + ["funccount: compiled and loaded (clang, verifier)", "attached"]
    assert steps[1] == common + ["funccount: loaded from the program cache", "attached"]
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_trace_leaves_itself_out_through_a_map_so_its_program_is_cached(cache, target):
    # trace's own pid is a map value, not a define (SELF_PID, a ptk_config slot):
    # the second run's text is the first's, so it is a hit.
    # -M: the run ends after N events by itself (an interrupt's drain is bounded in time).
    def traced() -> tuple[str, str]:
        with started("trace", "-M", str(N), f"{target}:counted_function", "--verbose",
                     env=cache) as tool:
            run_workload(target, "calls", str(N))
            out, err = tool.wait(timeout=120)
        assert tool.returncode == 0, err
        return out, err
    out1, err1 = traced()
    break_compiling(stored_entry(err1))
    out2, err2 = traced()
    hit_entry(err2)
    for out in (out1, out2):
        rows = [line.split()[2:] for line in out.splitlines()[1:]]
        assert rows == [[Path(target).name, "counted_function"]] * N, out


@pytest.mark.root
def test_opensnoop_tracepoints_and_ring_buffer_from_the_cache(cache, target, tmp_path):
    marker = str(tmp_path / "cache-marker")
    comm = Path(target).name
    results = []
    for attempt in range(2):
        with started("opensnoop", "-n", comm, "--verbose", env=cache) as tool:
            run_workload(target, "open", marker, str(N))
            out, err = tool.stop(signal.SIGINT)
        assert tool.returncode == 0, err
        hits = [line.split() for line in out.splitlines() if line.endswith(" " + marker)]
        assert len(hits) == N and {tuple(h[1:4]) for h in hits} == {(comm, "3", "0")}
        assert re.search(r"\b0 lost\b", err), err
        if attempt == 0:
            break_compiling(stored_entry(err))
        else:
            hit_entry(err)
        results.append([h[1:] for h in hits])
    assert results[0] == results[1]


def run_command(cache: dict, args: list[str], *command: str) -> tuple[str, str]:
    """The tool running `-- COMMAND` until it exits: the command is held until
    the unwinder has loaded it, so no call is counted before (by frame
    pointers, `not loaded yet`), however late a loaded machine runs the tool."""
    with started(*args, "--verbose", "--", *command, env=cache) as tool:
        out, err = tool.wait()
    assert tool.returncode == 0, err
    assert "Traceback" not in err
    return out, err


@pytest.mark.root
def test_stackcount_user_stacks_from_the_cache(cache, target):
    args = ["stackcount", f"{target}:stack_leaf"]
    out1, err1 = run_command(cache, args, target, "stacks", str(N))
    break_compiling(stored_entry(err1))
    out2, err2 = run_command(cache, args, target, "stacks", str(N))
    hit_entry(err2)
    assert out2 == out1
    assert "not loaded yet" not in out1
    blocks = [b.strip().splitlines() for b in out1.strip().split("\n\n")]
    assert [int(b[-1]) for b in blocks] == [N, 2 * N], out1
    assert "stack_path_a" in blocks[0][1] and "stack_path_b" in blocks[1][1], out1


@pytest.mark.root
def test_untrusted_corrupt_and_unloadable_entries_mean_compiling(cache, target):
    args = ["funccount", f"{target}:counted_function"]
    _out, err = run(cache, args, target, "calls", str(N))
    entry = stored_entry(err)
    good = entry.read_text()

    os.chown(entry, 65534, 65534)    # planted by another user
    out, err = run(cache, args, target, "calls", str(N))
    assert "ignoring an entry" in err and "owned by uid 65534" in err
    assert "miss for funccount" in err and funccount_counts(out) == {"counted_function": N}
    assert entry.stat().st_uid == 0     # rewritten by this run

    entry.write_text(good[: len(good) // 2])     # truncated: not JSON
    out, err = run(cache, args, target, "calls", str(N))
    assert "ignoring unreadable entry" in err and funccount_counts(out) == {"counted_function": N}

    # Well-formed, but every function now only says `exit` (r0 never set): the
    # kernel refuses it after the maps exist; they are closed, BCC compiles.
    bad = json.loads(good)
    exit_only = base64.b64encode(struct.pack("<BBhi", 0x95, 0, 0, 0)).decode()
    bad["functions"] = {name: exit_only for name in bad["functions"]}
    entry.write_text(json.dumps(bad))
    out, err = run(cache, args, target, "calls", str(N))
    assert "entry unusable" in err and "stored" in err
    assert funccount_counts(out) == {"counted_function": N}
    assert pytracekit_probes_left() == []


@pytest.mark.root
def test_disabled_cache_stores_nothing(cache, target):
    args = ["funccount", f"{target}:counted_function", "--verbose"]
    res = pytracekit(*args, "-d", "0.1", env={**cache, "PYTRACEKIT_NO_PROGRAM_CACHE": "1"})
    assert res.returncode == 0, res.stderr
    assert "program cache" not in res.stderr


def gated(target: str, go: Path, *mode: str) -> subprocess.Popen:
    """The workload waiting for `go` to exist before it acts."""
    return subprocess.Popen([target, "--go-file", str(go), *mode])


def release(proc: subprocess.Popen, go: Path) -> None:
    go.touch()
    assert proc.wait(timeout=60) == 0


@pytest.mark.root
def test_command_runs_share_one_cached_program_each_filtering_its_own_pid(cache, target,
                                                                          tmp_path):
    # The command's pid is a map value (ptk_config, bpf/pytracekit.h), not compiled
    # in: the second `-- COMMAND` run is a hit, and counts only its own command's
    # opens, none of a decoy's made while it traces (decoy first, command after).
    marker = str(tmp_path / "marker")
    pids = []
    for attempt, (n, decoy_n) in enumerate(((5, 7), (9, 4))):
        go_decoy, go_command = tmp_path / f"go-decoy{attempt}", tmp_path / f"go{attempt}"
        decoy = gated(target, go_decoy, "open", marker, str(decoy_n))
        try:
            with started("opensnoop", "--verbose", "--", target, "--go-file", str(go_command),
                         "open", marker, str(n), env=cache) as tool:
                release(decoy, go_decoy)
                go_command.touch()
                out, err = tool.wait(timeout=60)
        finally:
            decoy.kill()
            decoy.wait()
        assert tool.returncode == 0, err
        opened = [line.split() for line in out.splitlines() if line.endswith(" " + marker)]
        assert len(opened) == n, out
        assert len({row[0] for row in opened}) == 1 and opened[0][0] != str(decoy.pid), out
        pids.append(opened[0][0])
        if attempt == 0:
            assert "miss for opensnoop" in err
            break_compiling(stored_entry(err))
        else:
            hit_entry(err)
    assert pids[0] != pids[1]


@pytest.mark.root
def test_pid_runs_share_one_cached_program_each_filtering_its_own_pid(cache, target, tmp_path):
    # -p: the same with funccount on a tracepoint (a BPF-side filter only).
    marker = str(tmp_path / "marker")
    for attempt, (n, decoy_n) in enumerate(((6, 3), (4, 8))):
        go_decoy, go_target = tmp_path / f"go-decoy{attempt}", tmp_path / f"go{attempt}"
        decoy = gated(target, go_decoy, "open", marker, str(decoy_n))
        traced = gated(target, go_target, "open", marker, str(n))
        try:
            with started("funccount", "--verbose", "-p", str(traced.pid),
                         "t:syscalls:sys_enter_openat", env=cache) as tool:
                release(decoy, go_decoy)
                release(traced, go_target)
                out, err = tool.stop(signal.SIGINT)
        finally:
            for proc in (decoy, traced):
                proc.kill()
                proc.wait()
        assert tool.returncode == 0, err
        assert funccount_counts(out) == {"syscalls:sys_enter_openat": n}, out
        if attempt == 0:
            break_compiling(stored_entry(err))
        else:
            hit_entry(err)


def insn(code: int, src: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, src << 4, 0, imm)


def test_what_the_cache_cannot_reproduce_is_not_cached():
    # By name in the text: fentry/LSM programs load against a kernel BTF id while
    # BCC compiles; spin locks and timers need map BTF; pinned tables are shared.
    assert progcache.cacheable("int count(struct pt_regs *ctx) { return 0; }")
    for text in ("int kfunc__vfs_read(u64 *ctx)", "struct bpf_spin_lock lock;",
                 "BPF_TABLE_PINNED(\"hash\", u32, u64, m, 1, \"/sys/fs/bpf/m\");"):
        assert not progcache.cacheable(text), text
    # In the instructions: only map fds are relocated.
    ld_map = insn(0x18, progcache.BPF_PSEUDO_MAP_FD, 7) + insn(0, 0, 0)
    progcache._check_insns(ld_map + insn(0x85, 0, 1) + insn(0x95), {7})
    for bad in (ld_map, insn(0x18, 2, 7) + insn(0), insn(0x18, 3, 9) + insn(0),
                insn(0x85, 2, 1234), ld_map[:12]):
        with pytest.raises(progcache.Unusable):
            progcache._check_insns(bad, {8})
    # The new fd goes into the ld_imm64's first half; its second half is left alone.
    patched = progcache._patched(ld_map + insn(0xb7, 0, 7), {7: 42})
    assert patched == insn(0x18, progcache.BPF_PSEUDO_MAP_FD, 42) + insn(0) + insn(0xb7, 0, 7)


def test_per_process_ids_become_config_slots_and_any_stays_a_literal():
    defines, config = loader.run_time_ids({"FILTER_PID": 123, "FILTER_TID": 0, "EXEC_PID": 123,
                                           "PER_PID": True, "MIN_NS": 5})
    assert config == {0: 123, 1: 123}
    assert defines == {"FILTER_PID": "ptk_config_value(0)", "FILTER_TID": 0,
                       "EXEC_PID": "ptk_config_value(1)", "PER_PID": True, "MIN_NS": 5,
                       "PTK_CONFIG_SLOTS": 2}
    assert loader.run_time_ids({"FILTER_PID": 0}) == ({"FILTER_PID": 0}, {})
    # the text is the same for another pid
    assert loader.run_time_ids({"FILTER_PID": 77, "EXEC_PID": 77})[0] == {
        k: v for k, v in defines.items() if k in ("FILTER_PID", "EXEC_PID", "PTK_CONFIG_SLOTS")}


def test_no_preprocessor_condition_reads_a_run_time_id():
    # A run-time id is a C expression: `#if FILTER_PID` would be a compile error
    # (or, in the unfiltered program, silently another branch).
    names = "|".join(loader.RUN_TIME_IDS)
    condition = re.compile(rf"^\s*#\s*(if|elif)\b.*\b({names})\b", re.M)
    for path in sorted(loader.BPF_DIR.glob("*.[ch]")):
        assert not condition.search(path.read_text()), path



def _program(programs: Path, name: str, mtime: float | None = None) -> Path:
    """A program directory as the loader leaves it: its header and one entry."""
    directory = programs / name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vmlinux.h").write_text("/* header */\n")
    (directory / f"compiled-{name:0<32}.json").write_text("{}")
    if mtime is not None:
        os.utime(directory, (mtime, mtime))
    return directory


def _names(programs: Path) -> set[str]:
    return {p.name for p in programs.iterdir()}


def test_storing_past_the_bound_evicts_the_least_recently_used(tmp_path, monkeypatch):
    """The newest program directories stay, the oldest go, header and entry;
    a use (a compile or hit: ProgramDir) makes one new again; one in use (held
    by a compiling run) stays; so does the one just stored into."""
    programs = tmp_path / "kernel" / "programs"
    monkeypatch.setattr(progcache, "MAX_PROGRAMS", 3)
    for age, name in enumerate("abc"):
        _program(programs, name, mtime=1000 + age)           # a oldest, c newest
    with progcache.ProgramDir(lambda: programs / "a"):        # a run uses a: the newest now
        pass
    new = _program(programs, "d")
    progcache.store(new / "compiled-new.json", {"format": progcache.FORMAT})
    assert _names(programs) == {"a", "c", "d"}                 # b went, header and entry
    with progcache.ProgramDir(lambda: programs / "c") as held:    # c is being compiled from
        os.utime(programs / "c", (1000, 1000))                # and is the oldest
        _program(programs, "e")
        assert progcache.prune(programs) == [programs / "a"]  # not c: the next oldest
        assert held.fd >= 0 and (programs / "c" / "vmlinux.h").exists()
    assert _names(programs) == {"c", "d", "e"}
    monkeypatch.setattr(progcache, "MAX_PROGRAMS", 0)
    assert sorted(progcache.prune(programs, keep=programs / "e")) == [programs / "c",
                                                                      programs / "d"]
    assert _names(programs) == {"e"}                           # kept: just stored into


def test_a_pruned_program_directory_is_made_again_for_its_user(tmp_path):
    """A run that finds its directory removed before it could hold it makes
    it again (through `make`, as the loader's headers.program_header does)."""
    programs = tmp_path / "kernel" / "programs"
    made = []

    def make() -> Path:
        made.append(True)
        if len(made) == 1:
            return programs / "gone"                           # pruned meanwhile
        return _program(programs, "gone")
    with progcache.ProgramDir(make) as used:
        assert used.fd >= 0 and len(made) == 2
        assert progcache.prune(programs, max_programs=0) == []    # held


@pytest.mark.root
def test_pruning_leaves_what_root_does_not_own_alone(tmp_path):
    """Root removes only its own directories holding only its own files: a
    planted directory (another user's, one others can write, a link) or a
    planted file in one of ours is left alone."""
    programs = tmp_path / "kernel" / "programs"
    _program(programs, "old", mtime=1000)
    _program(programs, "new", mtime=2000)
    os.chown(_program(programs, "theirs", mtime=1), 65534, 65534)
    os.chmod(_program(programs, "writable", mtime=1), 0o777)
    planted = _program(programs, "planted") / "compiled-x.json"
    planted.write_text("{}")
    os.chown(planted, 65534, 65534)
    os.utime(planted.parent, (1, 1))
    outside = _program(tmp_path / "outside", "elsewhere")
    (programs / "link").symlink_to(outside)
    # counted: old, new, planted (ours, but holding another's file: it stays)
    assert progcache.prune(programs, max_programs=2) == [programs / "old"]
    assert progcache.prune(programs, max_programs=0) == [programs / "new"]
    assert _names(programs) == {"theirs", "writable", "planted", "link"}
    assert planted.exists() and (outside / "vmlinux.h").exists()


@pytest.mark.root
def test_a_program_directory_is_never_pruned_while_a_run_compiles_from_it(tmp_path):
    """Another process compiling (clang blocked on a FIFO header) holds its
    program directory: pruning to nothing leaves it, header and all; once the
    run is gone, pruning removes it."""
    from blocked_compile import compiling, fifo_header
    cache = tmp_path / "cache"
    header = fifo_header(cache)
    programs = header.parents[3] / "programs"        # <kernel key>/kernel/include/generated
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", "trace",
                             "t:syscalls:sys_enter_getppid"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTRACEKIT_CACHE": str(cache)})
    writer = -1
    try:
        writer = compiling(header, proc)
        [held] = list(programs.iterdir())
        assert (held / "vmlinux.h").exists()
        assert progcache.prune(programs, max_programs=0) == []
        assert (held / "vmlinux.h").exists()
    finally:
        proc.kill()
        proc.communicate()
        if writer >= 0:
            os.close(writer)
    assert progcache.prune(programs, max_programs=0) == [held]

"""profile's Python frames on real interpreters (Debian 3.11, pyenv 3.8-3.13):
tests/python_target.py under every interpreter in every mode, all in ONE
`profile -- sh -c ...` run (one compile, not ~30), each its own process; each
test looks at its own process's samples. Every expected line number is read
from the target's source."""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import pytracekit
from stack_checks import names, parse_json
from pythons import INTERPRETERS, need_pyenv, need_python

# The checks of the share of samples with whole Python frames need the reader
# to keep up: under `make test`'s workers the one profile runs with no other test.
pytestmark = pytest.mark.alone
TARGET = Path(__file__).parent / "python_target.py"
SOURCE = TARGET.read_text().splitlines()


def line_of(text: str, within: str) -> int:
    """The 1-based line of the first source line that is `text` once stripped,
    in function `within`."""
    start = SOURCE.index(f"def {within}:")
    return next(i + 1 for i, line in enumerate(SOURCE) if i > start and line.strip() == text)


def body_lines(within: str) -> set[int]:
    """The 1-based lines of function `within`, its `def` line included (3.11+
    give that line to the RESUME instruction at offset 0), up to a blank line."""
    start = SOURCE.index(f"def {within}:")
    end = SOURCE.index("", start)
    return set(range(start + 1, end + 1))


def function(frame_name: str) -> str:
    """'Thread.run (threading.py:975)' -> 'run' (3.8-3.10 names have no class)."""
    return frame_name.split(" (", 1)[0].rsplit(".", 1)[-1]


# What the one profiled run below runs: key -> (interpreter, python_target.py
# arguments, CPU seconds it takes). Each is its own process; the tests look
# at their own process's samples only.
RUNS: dict[str, tuple[str, tuple[str, ...], float]] = {}
for _name in INTERPRETERS:
    RUNS[f"loop {_name}"] = (_name, ("loop", "3"), 3)     # ~600 samples at 199 Hz
    RUNS[f"threads {_name}"] = (_name, ("threads", "0.75"), 1.5)
    RUNS[f"deep {_name}"] = (_name, ("deep", "1.5"), 1.5)
for _name in ["debian-3.11", "pyenv-3.8", "pyenv-3.13"]:
    RUNS[f"deep200 {_name}"] = (_name, ("deep", "1", "200"), 1)
RUNS["zlib debian-3.11"] = ("debian-3.11", ("zlib", "2"), 2)
RUNS["threads pyenv-3.7"] = ("pyenv-3.7", ("threads", "0.5"), 1)   # not supported
EXEC_KEY = "sh then exec debian-3.11"
LANES = 2   # CPU-bound runs at a time (this machine has 2 CPUs)
WARM_UP = {"threads", "deep200"}   # run first: see profiled()


def _available(interpreter: str) -> str | None:
    try:
        return need_python(interpreter) if interpreter != "pyenv-3.7" else need_pyenv(7)[0]
    except pytest.skip.Exception:
        return None


def _exec_script(python: str) -> str:
    """sh is sampled, found not to be Python (its last check is 2.1 s after its
    first sample), then execs the interpreter."""
    return (f"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 2.6; "
            f"exec {python} {TARGET} loop 2")


@dataclass
class Run:
    pid: int
    status: int
    stacks: list[dict]      # this process's samples (its pid, after its exec)
    comm: str


@dataclass
class Profiled:
    runs: dict[str, Run]
    stderr: str

    def get(self, key: str) -> tuple[list[dict], str]:
        """(stacks, stderr) of one run; skips when its interpreter is missing."""
        interpreter = RUNS[key][0] if key in RUNS else "debian-3.11"
        if interpreter == "pyenv-3.7":
            need_pyenv(7)
        else:
            need_python(interpreter)
        run = self.runs[key]
        assert run.status == 0, (key, run.status, self.stderr)
        return run.stacks, self.stderr


@pytest.fixture(scope="module")
def profiled(tmp_path_factory) -> Profiled:
    """One `profile -F 199 --json -- sh -c SCRIPT` where SCRIPT runs every
    python_target.py of RUNS (each its own process, LANES at a time) and the
    sh-then-exec process; the pid and exit status of each go to a file.

    In two phases: first the runs whose checks do not depend on how soon the
    tool registers a process (the first process of each interpreter waits
    longest: its library is read then), then the runs that check which share
    of all samples has the right frames."""
    pids = tmp_path_factory.mktemp("profile_python") / "pids"
    phases = []
    for warm_up in (True, False):
        lanes: list[list[str]] = [[] for _ in range(LANES)]
        load = [0.0] * LANES
        for key, (interpreter, args, seconds) in sorted(RUNS.items(), key=lambda r: -r[1][2]):
            python = _available(interpreter)
            if python is None or (key.split()[0] in WARM_UP) != warm_up:
                continue
            lane = load.index(min(load))
            load[lane] += seconds
            lanes[lane].append(" ".join(map(shlex.quote, [python, str(TARGET), *args])) +
                               f' & p=$!; wait $p; echo "{key}|$p|$?" >> {pids}')
        commands = [" ; ".join(lane) for lane in lanes if lane]
        python = _available("debian-3.11")
        if python and not warm_up:   # mostly asleep: a lane of its own
            commands.append(f"sh -c {shlex.quote(_exec_script(python))} & p=$!; wait $p; "
                            f'echo "{EXEC_KEY}|$p|$?" >> {pids}')
        phases.append(" & ".join(f"( {c} )" for c in commands) + " & wait")
    script = " ; ".join(phases)
    res = pytracekit("profile", "-F", "199", "--json", "--", "sh", "-c", script, timeout=600)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    runs = {}
    for line in pids.read_text().splitlines():
        key, pid, status = line.split("|")
        comm = os.path.basename(_available(RUNS[key][0] if key in RUNS else "debian-3.11"))
        runs[key] = Run(int(pid), int(status), [s for s in stacks if s["pid"] == int(pid) and (
            key == EXEC_KEY or s["comm"] == comm)], comm)
    return Profiled(runs, res.stderr)


def py_frames(stack: dict) -> list[str]:
    return names(stack, "python")


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_loop_is_outer_then_inner(profiled, interpreter):
    stacks, err = profiled.get(f"loop {interpreter}")
    total = sum(s["value"] for s in stacks)
    outer_line = line_of("inner(20000)", "outer(seconds)")
    inner_lines = body_lines("inner(n)")   # any line: a sample can land on each
    outer_lines = body_lines("outer(seconds)")
    in_inner = in_outer = 0
    other = []
    for s in stacks:
        py = py_frames(s)
        funcs = [function(f) for f in py]
        if funcs == ["<module>", "outer", "inner"]:
            assert py[1] == f"outer (python_target.py:{outer_line})"
            assert int(py[2].rsplit(":", 1)[1].rstrip(")")) in inner_lines, py[2]
            in_inner += s["value"]
        elif funcs == ["<module>", "outer"] and \
                "_PyEval_EvalFrameDefault" not in names(s, "user"):
            # outer's own lines: its clock read (process_time, a system call
            # whose share of samples grows with the machine's load: 0.7% at a
            # load of 3, 1.3-2% at 20-25), where the loop is outer alone. (A
            # sample in inner's call before its frame is pushed, or after it
            # is popped, has inner's eval loop on its stack, not yet or no
            # longer a Python frame: one of the rest, as before.)
            assert int(py[1].rsplit(":", 1)[1].rstrip(")")) in outer_lines, py[1]
            in_outer += s["value"]
        else:
            other.append((s["value"], py[-2:], names(s, "user")[-3:]))
            continue
        # the Python frames took the eval loop's place
        assert "_PyEval_EvalFrameDefault" not in names(s, "user"), names(s)
    assert total >= 100, err     # ~600 at 199 Hz for 3 s of CPU
    # the rest: the interpreter's start-up (imports) and exit, ~2%
    assert in_inner + in_outer >= 0.95 * total, (in_inner, in_outer, total, other, err)
    assert in_inner >= 0.9 * total, (in_inner, total)


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_two_threads_are_never_mixed(profiled, interpreter):
    stacks, err = profiled.get(f"threads {interpreter}")
    seen = {"spin_a": 0, "spin_b": 0}
    for s in stacks:
        funcs = [function(f) for f in py_frames(s)]
        spins = [f for f in funcs if f in seen]
        if not spins:
            continue
        assert len(spins) == 1 and funcs[-1] == spins[0], funcs        # one thread's stack
        assert funcs[:-1] == ["_bootstrap", "_bootstrap_inner", "run"], funcs
        seen[spins[0]] += s["value"]
    assert seen["spin_a"] >= 20 and seen["spin_b"] >= 20, (seen, err)


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_100_deep_recursion_is_whole(profiled, interpreter):
    stacks, err = profiled.get(f"deep {interpreter}")
    total = sum(s["value"] for s in stacks)
    whole = 0
    for s in stacks:
        funcs = [function(f) for f in py_frames(s)]
        if "bottom" in funcs:
            assert funcs == ["<module>"] + ["recurse"] * 100 + ["bottom"], funcs
            whole += s["value"]
    assert whole >= 0.9 * total and total >= 50, (whole, total, err)


@pytest.mark.root
@pytest.mark.parametrize("interpreter", ["debian-3.11", "pyenv-3.8", "pyenv-3.13"])
def test_200_deep_recursion_is_truncated_with_a_count(profiled, interpreter):
    stacks, err = profiled.get(f"deep200 {interpreter}")
    checked = 0
    for s in stacks:
        py = py_frames(s)
        if py and function(py[-1]) == "bottom":
            # 128 recorded (bottom + 127 recurse); 73 recurse + <module> counted
            assert py[0] == "[+74 python frames]"
            assert [function(f) for f in py[1:]] == ["recurse"] * 127 + ["bottom"]
            checked += s["value"]
    assert checked >= 50, err


@pytest.mark.root
def test_unsupported_python_says_so_once_and_keeps_native_frames(profiled):
    """The run's one 3.7 process: one line naming it, its samples native only."""
    stacks, err = profiled.get("threads pyenv-3.7")
    pid = profiled.runs["threads pyenv-3.7"].pid
    lines = [line for line in err.splitlines() if "not supported" in line]
    assert lines == [f"python 3.7 process {pid}: Python frames not supported (3.8-3.13); "
                     "native frames only"], err
    assert sum(s["value"] for s in stacks) >= 50
    assert not any(f["kind"] == "python" for s in stacks for f in s["frames"])


@pytest.mark.root
def test_no_python_option_gives_native_frames_only(profiled):
    stacks, _ = profiled.get("loop debian-3.11")
    assert any(py_frames(s) for s in stacks)
    python = need_python("debian-3.11")
    res = pytracekit("profile", "-F", "199", "--json", "--no-python", "--", python, str(TARGET),
                     "loop", "1", timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    assert sum(s["value"] for s in stacks) >= 50
    assert not any(py_frames(s) for s in stacks)


@pytest.mark.root
def test_a_process_that_execs_python_gets_python_frames(profiled):
    """sh is sampled, found not to be Python (its last check is 2.1 s after its
    first sample), then execs the interpreter: the exec makes BPF announce the
    process again and it is checked anew (_exec_script)."""
    stacks, err = profiled.get(EXEC_KEY)
    shell = sum(s["value"] for s in stacks if s["comm"] == "sh")
    python_samples = [s for s in stacks if s["comm"] == "python3.11"]
    total = sum(s["value"] for s in python_samples)
    ok = sum(s["value"] for s in python_samples
             if [function(f) for f in py_frames(s)] == ["<module>", "outer", "inner"])
    assert shell >= 5, err          # sh ran long enough to be sampled and checked
    assert total >= 100 and ok >= 0.9 * total, (ok, total, err)


@pytest.mark.root
def test_c_extension_call_has_its_python_caller_root_ward(profiled):
    """zlib.compress: `compress_it` then native frames down to libz's deflate.
    Needs every _PyEval_EvalFrameDefault frame, i.e. issue 12's in-kernel CFI
    unwinder (design section 7); with frame pointers alone the leaf is unnamed."""
    if "--unwind" not in pytracekit("profile", "--help").stdout:
        pytest.skip("needs issue 12's in-kernel CFI unwinder (profile --unwind)")
    stacks, err = profiled.get("zlib debian-3.11")
    total = sum(s["value"] for s in stacks)
    ok = 0
    for s in stacks:
        frames = [f["name"] for f in s["frames"]]
        if "deflate" in frames and "compress_it (python_target.py:" + str(
                line_of("zlib.compress(data, 9)", "compress_it(seconds)")) + ")" in frames:
            i = frames.index(next(f for f in frames if f.startswith("compress_it (")))
            assert frames.index("deflate") > i, frames       # Python caller root-ward
            assert [function(f) for f in py_frames(s)] == ["<module>", "compress_it"], frames
            ok += s["value"]
    assert ok >= 0.8 * total and total >= 100, (ok, total, err)

"""profile's Python frames on real interpreters (Debian 3.11, pyenv 3.8-3.13):
tests/python_target.py run as `profile -- PYTHON python_target.py MODE`.
Every expected line number is read from the target's source."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from conftest import pytracekit
from stack_checks import names, parse_json
from pythons import INTERPRETERS, need_pyenv, need_python

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


@functools.lru_cache(maxsize=None)
def profiled(interpreter: str, *args: str) -> tuple[list[dict], str]:
    """(stacks, stderr) of profile -F 199 --json -- PYTHON python_target.py ARGS."""
    python = need_python(interpreter)
    res = pytracekit("profile", "-F", "199", "--json", "--", python, str(TARGET), *args,
                     timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    return stacks, res.stderr


def py_frames(stack: dict) -> list[str]:
    return names(stack, "python")


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_loop_is_outer_then_inner(interpreter):
    stacks, err = profiled(interpreter, "loop", "3")
    total = sum(s["value"] for s in stacks)
    outer_line = line_of("inner(20000)", "outer(seconds)")
    inner_lines = body_lines("inner(n)")   # any line: a sample can land on each
    ok = 0
    for s in stacks:
        py = py_frames(s)
        if [function(f) for f in py] == ["<module>", "outer", "inner"]:
            assert py[1] == f"outer (python_target.py:{outer_line})"
            assert int(py[2].rsplit(":", 1)[1].rstrip(")")) in inner_lines, py[2]
            # the Python frames took the eval loop's place
            assert "_PyEval_EvalFrameDefault" not in names(s, "user"), names(s)
            ok += s["value"]
    assert total >= 100, err     # ~600 at 199 Hz for 3 s of CPU
    assert ok >= 0.95 * total, (ok, total, err)


@pytest.mark.root
@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_two_threads_are_never_mixed(interpreter):
    stacks, err = profiled(interpreter, "threads", "1.5")
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
def test_100_deep_recursion_is_whole(interpreter):
    stacks, err = profiled(interpreter, "deep", "1.5")
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
def test_200_deep_recursion_is_truncated_with_a_count(interpreter):
    stacks, err = profiled(interpreter, "deep", "1", "200")
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
def test_unsupported_python_says_so_once_and_keeps_native_frames():
    python, _ = need_pyenv(7)
    res = pytracekit("profile", "-F", "199", "--json", "--", python, str(TARGET), "threads", "1",
                     timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    lines = [line for line in res.stderr.splitlines() if "not supported" in line]
    assert len(lines) == 1 and re.fullmatch(
        r"python 3\.7 process \d+: Python frames not supported \(3\.8-3\.13\); native frames only",
        lines[0]), res.stderr
    assert sum(s["value"] for s in stacks) >= 50
    assert not any(f["kind"] == "python" for s in stacks for f in s["frames"])


@pytest.mark.root
def test_no_python_option_gives_native_frames_only():
    stacks, _ = profiled("debian-3.11", "loop", "1")
    assert any(py_frames(s) for s in stacks)
    python = need_python("debian-3.11")
    res = pytracekit("profile", "-F", "199", "--json", "--no-python", "--", python, str(TARGET),
                     "loop", "1", timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    assert sum(s["value"] for s in stacks) >= 50
    assert not any(py_frames(s) for s in stacks)


@pytest.mark.root
def test_a_process_that_execs_python_gets_python_frames():
    """sh is sampled, found not to be Python (its last check is 2.1 s after its
    first sample), then execs the interpreter: the exec makes BPF announce the
    process again and it is checked anew."""
    python = need_python("debian-3.11")
    script = (f"i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; sleep 2.6; "
              f"exec {python} {TARGET} loop 2")
    res = pytracekit("profile", "-F", "199", "--json", "--", "sh", "-c", script, timeout=120)
    assert res.returncode == 0, res.stderr
    _, stacks, _ = parse_json(res.stdout, "profile")
    shell = sum(s["value"] for s in stacks if s["comm"] == "sh")
    python_samples = [s for s in stacks if s["comm"] == "python3.11"]
    total = sum(s["value"] for s in python_samples)
    ok = sum(s["value"] for s in python_samples
             if [function(f) for f in py_frames(s)] == ["<module>", "outer", "inner"])
    assert shell >= 5, res.stderr          # sh ran long enough to be sampled and checked
    assert total >= 100 and ok >= 0.9 * total, (ok, total, res.stderr)


@pytest.mark.root
def test_c_extension_call_has_its_python_caller_root_ward():
    """zlib.compress: `compress_it` then native frames down to libz's deflate.
    Needs every _PyEval_EvalFrameDefault frame, i.e. issue 12's in-kernel CFI
    unwinder (design section 7); with frame pointers alone the leaf is unnamed."""
    if "--unwind" not in pytracekit("profile", "--help").stdout:
        pytest.skip("needs issue 12's in-kernel CFI unwinder (profile --unwind)")
    stacks, err = profiled("debian-3.11", "zlib", "2")
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

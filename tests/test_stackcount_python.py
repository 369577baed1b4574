"""stackcount's Python frames (issue 13) on real interpreters: a tracepoint
that tests/python_target.py's `getpids N` mode hits N times from
<module> -> getpids -> caller -> callee (plus once from getpids before, the
event that announces the process). Line numbers come from its source."""
from __future__ import annotations

import os

import pytest

from conftest import pytracekit
from probe_helpers import validated_json_lines
from pythons import need_python
from stack_checks import names
from test_profile_python import TARGET, function, line_of

pytestmark = pytest.mark.root
N = 25
PYTHON_PATH = ["<module>", "getpids", "caller", "callee"]


def getpid_stacks(python: str, *options: str) -> list[dict]:
    """The target's stacks at sys_enter_getpid, validated JSON (-P: per process)."""
    res = pytracekit("stackcount", "--json", "-P", *options, "t:syscalls:sys_enter_getpid",
                     "--", python, str(TARGET), "getpids", str(N), timeout=120)
    assert res.returncode == 0, res.stderr
    stacks = [o for o in validated_json_lines("stackcount", res.stdout) if o["type"] == "stack"]
    mine = [s for s in stacks if s["comm"] == os.path.basename(python)]
    assert sum(s["value"] for s in mine) == N + 1, (res.stdout, res.stderr)
    assert all(names(s, "user")[-1].endswith("getpid") for s in mine), mine   # libc's leaf
    assert all(names(s, "kernel") for s in mine), mine
    return mine


@pytest.mark.parametrize("interpreter", ["debian-3.11", "pyenv-3.13"])
def test_each_call_is_counted_under_its_exact_python_stack(interpreter):
    stacks = getpid_stacks(need_python(interpreter))
    called = [s for s in stacks if [function(n) for n in names(s, "python")] == PYTHON_PATH]
    assert len(called) == 1 and called[0]["value"] == N, stacks
    python = names(called[0], "python")
    assert python[1:] == [f"getpids (python_target.py:{line_of('caller(n)', 'getpids(n)')})",
                          f"caller (python_target.py:{line_of('callee()', 'caller(n)')})",
                          f"callee (python_target.py:{line_of('os.getpid()', 'callee()')})"]
    # interleaved: the interpreter's native frames root-ward, os.getpid's leaf-ward
    kinds = [f["kind"] for f in called[0]["frames"]]
    first, last = kinds.index("python"), len(kinds) - 1 - kinds[::-1].index("python")
    assert kinds[first:last + 1] == ["python"] * 4, called[0]
    assert names(called[0])[first - 1] == "PyEval_EvalCode", called[0]
    assert kinds[last + 1] == "user", called[0]


def test_no_python_gives_the_native_stacks_only():
    stacks = getpid_stacks(need_python("debian-3.11"), "--no-python")
    assert not any(names(s, "python") for s in stacks), stacks
    assert all("_PyEval_EvalFrameDefault" in names(s, "user") for s in stacks), stacks

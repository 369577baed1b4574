"""Every tool's start() returns one session shape (engine.session.Session):
a context manager whose close() detaches everything, ready(), read() and
loss(). Each start() here attaches for real (root), then the session is read
once and closed: nothing of this process may be left in tracefs or loaded."""
import importlib
import os
import subprocess

import pytest

from conftest import pytracekit_probes_left
from pytracekit.cli.command import tool_names
from pytracekit.engine.runner import Target
from pytracekit.engine.session import ProgramSession, Session
from pytracekit.model import LossReport
from netns_fixture import veth_pair  # noqa: F401
from pytracekit.probes.perf_events import parse as parse_event
from usdt_helpers import PYTHON


def _starts() -> list[str]:
    return [name for name in tool_names()
            if hasattr(importlib.import_module(f"pytracekit.tools.{name}"), "start")]


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "3600"])   # killed at teardown; outlives a slow run


def _python() -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-c", "import time; time.sleep(3600)"])



# The arguments of the start()s that need some (the rest take their
# defaults): (args, kwargs) from the fixture's live processes and targets.
START_ARGS = {
    "argdist": lambda live: ((), {"count_specs": ["t:syscalls:sys_enter_getpid():int:args->__syscall_nr"]}),
    "funccount": lambda live: (("t:syscalls:sys_enter_getpid",), {"announce": False}),
    "funcinterval": lambda live: ((f"{live['workload']}:stack_leaf",), {}),
    "funclatency": lambda live: ((f"{live['workload']}:stack_leaf",), {"announce": False}),
    "funcslower": lambda live: (((f"{live['workload']}:stack_leaf",),), {}),
    "stackcount": lambda live: (("t:syscalls:sys_enter_getpid",), {"announce": False}),
    "trace": lambda live: ((["t:syscalls:sys_enter_getpid"],), {}),
    "stat": lambda live: (([parse_event("syscalls:sys_enter_openat")],),
                          {"filters": {0: 'filename == "/nonexistent"'}, "system_wide": True}),
    "syscount": lambda live: ((live["target"],), {}),
    "systrace": lambda live: ((live["target"], lambda record: None), {}),
    "pktcount": lambda live: (([live["veth"].if_a],), {"netns": live["veth"].ns_a}),
    "deadlock": lambda live: ((), {"pid": live["sleep"].pid}),
    "mutexstat": lambda live: ((), {"pid": live["sleep"].pid}),
    "memleak": lambda live: ((), {"pid": live["sleep"].pid}),
    "ugc": lambda live: ((), {"pid": live["python"].pid}),
}


def _loaded_bpf() -> int:
    """This process's fds for BPF programs, maps and links."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith("anon_inode:bpf")
        except OSError:
            pass
    return count


@pytest.fixture(scope="module")
def live(veth_pair, workload):
    sleep, python = _sleeper(), _python()
    target = Target()
    yield {"sleep": sleep, "python": python, "target": target, "veth": veth_pair,
           "workload": workload}
    for proc in (sleep, python):
        proc.kill()
        proc.wait()
    target.finish()


def test_every_tool_with_a_start_is_checked():
    """The list is the tool registry's: a tool that gains start() is covered."""
    names = _starts()
    assert {"biolatency", "execsnoop", "profile", "top", "stat", "trace"} <= set(names)
    assert set(START_ARGS) <= set(names), "arguments for a tool without start()"


@pytest.mark.root
@pytest.mark.parametrize("name", _starts())
def test_start_returns_a_session_that_closes_cleanly(name, live):
    module = importlib.import_module(f"pytracekit.tools.{name}")
    args, kwargs = START_ARGS.get(name, lambda live: ((), {}))(live)
    ours = f"_bcc_{os.getpid()}"
    before = _loaded_bpf()
    with module.start(*args, **kwargs) as session:
        assert isinstance(session, Session), f"{name}: {type(session).__name__}"
        assert isinstance(session, ProgramSession)
        session.ready()
        session.read()
        assert isinstance(session.loss(), LossReport)
        assert _loaded_bpf() > before, f"{name}: nothing loaded"
    assert [line for line in pytracekit_probes_left() if ours in line] == []
    assert _loaded_bpf() == before, f"{name}: BPF fds left open after close()"
    session.close()     # a second close() is harmless


@pytest.mark.root
def test_top_function_mode_is_a_session_too():
    """top's function mode builds its session in the family (no start())."""
    from pytracekit.families.topfunctions import FunctionProfile
    before = _loaded_bpf()
    with FunctionProfile(frequency=49, pid=None, idle=False) as session:
        assert isinstance(session, Session) and isinstance(session, ProgramSession)
        assert isinstance(session.read(), list) and isinstance(session.loss(), LossReport)
    assert _loaded_bpf() == before

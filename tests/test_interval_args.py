"""BCC's `[interval [count]]` positionals, then `-- COMMAND`: one parser
(options.split_interval_count) for every tool that prints per interval."""
import importlib
import subprocess
from concurrent.futures import ThreadPoolExecutor

import click
import pytest

from conftest import pytracekit
from pytracekit.cli.command import tool_names
from pytracekit.families import summary
from pytracekit.errors import UsageError


@pytest.mark.parametrize("words, flags, expected", [
    (("1", "1", "/bin/true"), (None, None), (1.0, 1, ("/bin/true",))),
    (("0.5",), (None, None), (0.5, None, ())),
    (("/bin/echo", "1", "2"), (None, None), (None, None, ("/bin/echo", "1", "2"))),
    (("/bin/true",), (2.0, 3), (2.0, 3, ("/bin/true",))),
    ((), (None, None), (None, None, ())),
])
def test_interval_count_then_command(words, flags, expected):
    assert summary.interval_and_count(words, *flags) == expected


@pytest.mark.parametrize("words, flags, message", [
    (("1",), (2.0, None), "give the interval once"),
    (("1", "2"), (None, 3), "give the count once"),
    ((), (None, 3), "a count needs an interval"),
    (("1", "0"), (None, None), "count"),
])
def test_interval_count_mistakes(words, flags, message):
    with pytest.raises(UsageError, match=message):
        summary.interval_and_count(words, *flags)


def interval_tools() -> list[str]:
    """From the tool registry: every tool with --interval and words after its
    options (where `[interval [count]]` and `-- COMMAND` go)."""
    found = []
    for name in tool_names():
        command = importlib.import_module(f"pytracekit.tools.{name}").command
        opts = {opt for param in command.params for opt in getattr(param, "opts", [])}
        if "--interval" in opts and any(isinstance(p, click.Argument) and p.nargs == -1
                                        for p in command.params):
            found.append(name)
    return found


def _args_without_a_target(name: str) -> list[str]:
    """The tool's DRY_RUN_ARGS (what it needs: a probe, an event) less what
    picks its target or duration (-p N, -a, --duration N): the command does."""
    args = list(importlib.import_module(f"pytracekit.tools.{name}").DRY_RUN_ARGS)
    out = []
    while args:
        arg = args.pop(0)
        if arg in ("-p", "--pid", "--duration", "-d"):
            args.pop(0)
        elif arg != "-a":
            out.append(arg)
    return out


@pytest.fixture(scope="module")
def grammar_runs(tmp_path_factory) -> dict:
    """`TOOL ARGS --json 5 1 -- touch FILE` for every interval tool, two at a time."""
    marks = tmp_path_factory.mktemp("ran")

    def run(name: str):
        mark = marks / name
        try:
            return pytracekit(name, *_args_without_a_target(name), "--json", "5", "1", "--",
                              "/usr/bin/touch", str(mark)), mark
        except subprocess.TimeoutExpired as exc:
            return exc, mark
    names = interval_tools()
    with ThreadPoolExecutor(2) as pool:
        return dict(zip(names, pool.map(run, names)))


def test_the_interval_tools_come_from_the_registry():
    tools = interval_tools()
    assert {"runqlat", "biolatency", "hardirqs", "softirqs", "bitesize", "syscount",
            "memleak", "kmem", "argdist", "biostacks", "funccount", "funclatency",
            "pidpersec", "pktcount", "stackcount", "stat"} <= set(tools)


@pytest.mark.root
@pytest.mark.alone("every-tool")   # its batch compiles every tool two at a time: one batch at once (conftest)
@pytest.mark.parametrize("tool", interval_tools())
def test_interval_count_before_a_command(tool, grammar_runs):
    """`TOOL 5 1 -- touch FILE` runs touch, never a command named `5`: the
    numbers are the interval and count, or (tools without them) one usage line."""
    res, mark = grammar_runs[tool]
    if isinstance(res, Exception):
        raise res
    if res.returncode == 2:
        assert res.stderr == (f"pytracekit {tool}: error: {tool} takes no [interval] [count] "
                              "numbers: give -d SECONDS to stop after a while, and a command "
                              "after --\n")
        assert not mark.exists()
        return
    assert res.returncode == 0, res.stderr
    assert "cannot run" not in res.stderr
    assert mark.exists(), f"{tool} did not run the command"


# The tools whose `5` was once read as a command's name (they had only -i/--interval).
ONCE_A_COMMAND = ("argdist", "biostacks", "funccount", "funclatency", "pidpersec", "pktcount",
                  "stackcount", "stat")


@pytest.mark.root
def test_the_positional_count_ends_the_run():
    """`TOOL 0.2 2 -- sleep 600` ends after two intervals, not with the sleep:
    the count is taken (and so the interval it needs), and the sleep stopped."""
    def run(name: str):
        try:
            return pytracekit(name, *_args_without_a_target(name), "0.2", "2", "--",
                              "sleep", "600", timeout=120)
        except subprocess.TimeoutExpired as exc:
            return exc
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(ONCE_A_COMMAND, pool.map(run, ONCE_A_COMMAND)))
    for name, res in results.items():
        assert not isinstance(res, Exception), f"{name} ran until the sleep: {res}"
        assert res.returncode == 0, f"{name}: {res.stderr}"

"""The shared long options are spelled the same in every tool.

Every tool has --pid, --duration, --interval, --json and `-- COMMAND`, and stack
tools --folded, unless it is listed below with the reason the option makes no
sense for it. A new tool is held to this as soon as it is added. BCC tools keep
BCC's short flags, checked against the long option they stand for.
"""
import importlib

import click
import pytest

from pytracekit.cli.command import tool_names
from pytracekit.cli.options import CommandAfterDashes

# Tools that trace nothing live: they read files or report on the machine.
NOT_LIVE = {
    "doctor",   # reports kernel features
    "list",     # lists events (it takes --pid for a process's libraries, checked below)
    "report",   # reads a recording
    "diff",     # compares two recordings
    "script",   # prints a recording's samples
}

WITHOUT = {
    "--pid": NOT_LIVE - {"list"} | {
        "export",    # serves the tools named in its config, each with its own filters
        "runqlen",   # samples per-CPU run queues, not processes (BCC has no -p either)
        "cpuunclaimed",  # compares all CPUs' run queues at each tick (BCC has no -p either)
        # block I/O and interrupts are mostly issued outside the process that caused
        # them, packets and retransmits by the kernel: BCC's tools have no -p either
        "biolatency", "biosnoop", "bitesize", "hardirqs", "softirqs", "pktcount",
        "tcpretrans", "tcpstates",
        "biopattern", # per disk, as biolatency (BCC has no -p either)
        "tcpdrop",    # drops happen in softirq, on behalf of whoever was on CPU
        "tcprtt",     # segments are received in softirq (BCC filters by port and address)
        "execsnoop",  # traces new processes, which have no pid to give beforehand
    },
    "--duration": NOT_LIVE,
    "--interval": NOT_LIVE | {
        "export",    # Prometheus scrapes it when it wants
        "cprofile",  # --every is its window; each window is written, not printed
        "record",    # writes one recording
        "annotate",  # one function's share of the whole run's samples
        # whole-run stack profiles, as in BCC (profile/offcputime have no interval)
        "profile", "offcputime", "offwaketime", "wakeuptime",
        # print each event as it happens
        "trace", "systrace", "biosnoop", "execsnoop", "exitsnoop", "killsnoop", "opensnoop",
        "statsnoop", "tcpaccept", "tcpconnect", "tcplife", "tcpretrans", "tcpstates",
        "bindsnoop", "fileslower", "funcslower", "gethostlatency", "solisten", "tcpconnlat",
        "tcpdrop",
        "ugc", "uthreads",
        "sigsnoop", "threadsnoop", "capable", "oomkill", "mountsnoop", "drsnoop",
        "compactsnoop", "runqslower", "bashreadline", "sslsniff",
        "deadlock",  # checks its lock-order graph as it goes, stops at the first cycle
        "timehist",  # one line per run, as perf sched timehist
        "timechart",  # one chart of the whole run, as perf timechart
    },
    "--json": set(),
    "-- COMMAND": NOT_LIVE | {
        "export",    # a long-running server
        "ugc",       # CPython's gc probes have semaphores: set in a running process (-p)
    },
}

# Tools whose results are stacks with counts: they print folded stacks too.
STACK_TOOLS = {"stackcount", "profile", "offcputime", "offwaketime", "wakeuptime", "faults",
               "funcslower",   # -f: one folded line per slow call
               "report"}
# Tools that show stacks but not as a stack profile (per lock, per allocation).
STACKS_NOT_FOLDED = {
    "klockstat", "mutexstat",  # stacks per lock, with wait and hold times
    "memleak",                 # outstanding bytes per stack, with addresses (as BCC)
    "trace",                   # a stack under each event line (-U/-K)
    "capable",                 # a kernel stack under each check (-K)
    "compactsnoop",            # a kernel stack under each compaction (-K)
    "record",                  # writes every sample; `report --folded` folds them
    "export",                  # metrics
}

# BCC's short flags for the long options, per BCC tool.
BCC_SHORT = {
    "funccount": {"-p": "--pid", "-i": "--interval", "-d": "--duration"},
    "funclatency": {"-p": "--pid", "-i": "--interval", "-d": "--duration"},
    "funcinterval": {"-p": "--pid", "-i": "--interval", "-d": "--duration"},
    "stackcount": {"-p": "--pid", "-i": "--interval", "-D": "--duration", "-f": "--folded"},
    "argdist": {"-p": "--pid", "-i": "--interval", "-d": "--duration"},
    "trace": {"-p": "--pid"},
    "profile": {"-p": "--pid", "-f": "--folded"},
    "offcputime": {"-p": "--pid", "-f": "--folded"},
    "offwaketime": {"-p": "--pid", "-f": "--folded"},
    "wakeuptime": {"-p": "--pid", "-f": "--folded"},
    "syscount": {"-p": "--pid", "-i": "--interval", "-d": "--duration"},
    "runqlat": {"-p": "--pid"},
    "cpudist": {"-p": "--pid"},
    "memleak": {"-p": "--pid"},
    "klockstat": {"-p": "--pid", "-d": "--duration", "-i": "--interval"},
    "drsnoop": {"-p": "--pid", "-d": "--duration"},
    "runqslower": {"-p": "--pid"},
    "vfsstat": {"-p": "--pid"},
    "sslsniff": {"-p": "--pid"},
}


def _command(name: str) -> click.Command:
    return importlib.import_module(f"pytracekit.tools.{name}").command


def _options(cmd: click.Command) -> dict[str, click.Option]:
    return {opt: p for p in cmd.params if isinstance(p, click.Option) for opt in p.opts}


def _takes_command(cmd: click.Command) -> bool:
    if isinstance(cmd, CommandAfterDashes):
        return True
    return any(isinstance(p, click.Argument) and p.nargs == -1 for p in cmd.params)


def _has(name: str, option: str) -> bool:
    cmd = _command(name)
    if option == "-- COMMAND":
        return _takes_command(cmd)
    return option in _options(cmd)


def test_allow_lists_name_real_tools():
    names = set(tool_names())
    for option, tools in WITHOUT.items():
        assert tools <= names, f"{option}: no such tools {tools - names}"
    assert STACK_TOOLS | STACKS_NOT_FOLDED | set(BCC_SHORT) <= names


@pytest.mark.parametrize("option", sorted(WITHOUT))
def test_every_tool_has_the_shared_long_option(option):
    missing = [n for n in tool_names() if n not in WITHOUT[option] and not _has(n, option)]
    assert not missing, f"{option} missing in {missing} (add it, or allow-list it with why)"


@pytest.mark.parametrize("option", sorted(WITHOUT))
def test_allow_lists_are_not_stale(option):
    stale = [n for n in WITHOUT[option] & set(tool_names()) if _has(n, option)]
    assert not stale, f"{stale} now have {option}: take them off the allow-list"


def test_stack_tools_have_folded():
    missing = [n for n in STACK_TOOLS if not _has(n, "--folded")]
    assert not missing, missing


def test_every_tool_with_stack_options_is_classified():
    """A tool with -U/-K (or --folded) shows stacks: say whether it folds them."""
    for name in tool_names():
        opts = _options(_command(name))
        shows_stacks = any(o in opts for o in ("--folded", "--user-stacks-only",
                                               "--kernel-stacks-only", "--user-stack",
                                               "--kernel-stack"))
        if shows_stacks:
            assert name in STACK_TOOLS | STACKS_NOT_FOLDED, name


@pytest.mark.parametrize("option, dest, kind", [
    ("--pid", None, None),
    ("--duration", "duration", float),
    ("--interval", None, float),
    ("--json", "as_json", None),
    ("--folded", None, None),
])
def test_shared_options_mean_the_same_everywhere(option, dest, kind):
    for name in tool_names():
        opt = _options(_command(name)).get(option)
        if opt is None:
            continue
        if option in ("--json", "--folded"):
            assert opt.is_flag, f"{name} {option} should be a flag"
        else:
            assert not opt.is_flag and opt.nargs == 1, f"{name} {option} takes a value"
        if kind is float:
            assert opt.type.convert("1.5", None, None) == 1.5, f"{name} {option} in seconds"
        if dest:
            assert opt.name == dest, f"{name} {option} stored as {opt.name}"


@pytest.mark.parametrize("name", sorted(BCC_SHORT))
def test_bcc_short_flags(name):
    opts = _options(_command(name))
    for short, long in BCC_SHORT[name].items():
        assert short in opts and long in opts[short].opts, f"{name}: {short} should be {long}"

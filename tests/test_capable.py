"""capable against a process that chroots a known number of times as root,
then once as nobody: each CAP_SYS_CHROOT check once, with its verdict, as
perf counts capability:cap_capable for the same command."""
import sys

import pytest

from conftest import pytracekit
from snoop_helpers import one_line_error, perf_stat, summary, validated_json

CHROOTS = 4
SCRIPT = f"""
import os
for _ in range({CHROOTS}):
    os.chroot("/")
os.setuid(65534)
try:
    os.chroot("/")
except PermissionError:
    os.write(1, b"denied\\n")   # one write: print's two (PYTHONUNBUFFERED) can straddle the tool's
"""
COMMAND = [sys.executable, "-c", SCRIPT]


@pytest.mark.root
def test_each_check_once_with_its_verdict():
    res = pytracekit("capable", "-x", "-c", "SYS_CHROOT", "--", *COMMAND)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    lines.remove("denied")   # the command's own line, wherever it fell
    assert lines[0].split() == ["TIME", "UID", "PID", "TID", "COMM", "CAP", "NAME", "VERDICT"]
    rows = [line.split()[1:] for line in lines[1:]]
    pid = rows[0][1]
    assert [(r[0], r[1], r[2], r[4], r[5], r[6]) for r in rows] == \
        [("0", pid, pid, "18", "CAP_SYS_CHROOT", "allow")] * CHROOTS + \
        [("65534", pid, pid, "18", "CAP_SYS_CHROOT", "deny")]
    assert summary(res.stderr) == {"captured": CHROOTS + 1, "lost": 0, "unread": 0}
    perf = perf_stat(["capability:cap_capable"], COMMAND, filter_="cap == 18")
    assert perf["capability:cap_capable"] == CHROOTS + 1


@pytest.mark.root
def test_denied_only_with_the_kernel_and_user_stacks_in_json():
    res = pytracekit("capable", "--denied", "-K", "-U", "--json", "--", *COMMAND)
    assert res.returncode == 0, res.stderr
    objects = validated_json("capable", res.stdout.replace("denied\n", ""))
    events = [o for o in objects if o["type"] == "event"]
    assert [(e["uid"], e["cap"], e["name"], e["ret"], e["verdict"]) for e in events] == \
        [(65534, 18, "CAP_SYS_CHROOT", -1, "deny")]
    # the check itself first (not the tracepoint's BPF frames), then chroot(2)
    # asking, from the syscall entry; stored by a hash of its frames (ptk_kstack.h)
    assert events[0]["kernel_stack"] == \
        ["cap_capable", "security_capable", "ns_capable", "__x64_sys_chroot",
         "do_syscall_64", "entry_SYSCALL_64_after_hwframe"]
    # libc's chroot() asked, called from the interpreter, unwound (Debian's python
    # has no frame pointers) down to the program's entry
    ustack = events[0]["user_stack"]
    assert ustack[0] == "chroot" and "Py_BytesMain" in ustack and ustack[-1] == "_start", ustack


@pytest.mark.root
def test_unique_shows_each_capability_once_per_process():
    """BCC's --unique: the first check of each capability by each process;
    the same capabilities as without it, of which CAP_SYS_CHROOT 5 times."""
    every = pytracekit("capable", "--json", "--", *COMMAND)
    unique = pytracekit("capable", "--unique", "--json", "--", *COMMAND)
    assert every.returncode == 0 and unique.returncode == 0, every.stderr + unique.stderr
    runs = [[o for o in validated_json("capable", r.stdout.replace("denied\n", ""))
             if o["type"] == "event"] for r in (every, unique)]
    assert [e["name"] for e in runs[0]].count("CAP_SYS_CHROOT") == CHROOTS + 1
    seen = [(e["pid"], e["cap"]) for e in runs[1]]
    assert len(seen) == len(set(seen))
    assert {e["cap"] for e in runs[1]} == {e["cap"] for e in runs[0]}
    chroot = [e for e in runs[1] if e["name"] == "CAP_SYS_CHROOT"]
    assert [(e["uid"], e["verdict"]) for e in chroot] == [(0, "allow")]


def test_unknown_capability_is_a_usage_error():
    res = pytracekit("capable", "-c", "SYS_NOPE", "-d", "0.1")
    assert res.returncode == 2
    assert "unknown capability 'SYS_NOPE'" in one_line_error(res.stderr, "capable")


def test_without_the_tracepoint_it_says_what_would_work(monkeypatch):
    from pytracekit.errors import NotFoundError, NotSupportedError
    from pytracekit.kernel import tracefs
    from pytracekit.tools import capable

    def missing(category, event):
        raise NotFoundError(f"unknown tracepoint {category}:{event}")
    monkeypatch.setattr(tracefs, "tracepoint", missing)
    with pytest.raises(NotSupportedError, match="kprobe on cap_capable"):
        capable.start()

"""bashreadline against an interactive bash on a pseudo-terminal that the
test types known lines into: each line once, exactly as typed (a long one
cut at 255 bytes), from that bash."""
import os
import pty
import select
import time

import pytest

from conftest import Tool, pytracekit
from snoop_helpers import one_line_error, summary, validated_json

LINES = ["echo one", "  ls /nonexistent  ", "x=" + "y" * 300, "exit"]


def _drain(fd: int, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                os.read(fd, 4096)
            except OSError:
                return


def type_into_bash(lines: list[str]) -> int:
    """An interactive bash on a pty, each line typed after its prompt; its pid."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    try:
        for line in lines:
            _drain(fd, 0.3)
            os.write(fd, line.encode() + b"\n")
        _drain(fd, 0.3)
        os.waitpid(pid, 0)
    finally:
        os.close(fd)
    return pid


@pytest.mark.root
def test_each_typed_line_once():
    with Tool("bashreadline", "--json") as tool:
        bash = type_into_bash(LINES)
        out, err = tool.stop()
    objects = validated_json("bashreadline", out)
    mine = [o for o in objects if o["type"] == "event" and o["pid"] == bash]
    assert [(o["comm"], o["command"]) for o in mine] == \
        [("bash", line[:255]) for line in LINES]
    assert objects[-1]["type"] == "loss" and summary(err)["lost"] == 0


@pytest.mark.root
def test_text_columns():
    with Tool("bashreadline") as tool:
        bash = type_into_bash(["echo two", "exit"])
        out, err = tool.stop()
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMMAND"]
    assert [line.split(None, 2)[2] for line in lines[1:] if line.split()[1] == str(bash)] == \
        ["echo two", "exit"]


@pytest.mark.root
def test_a_library_without_readline_is_one_line():
    res = pytracekit("bashreadline", "-s", "/lib/x86_64-linux-gnu/libc.so.6", "-d", "0.1")
    assert res.returncode == 1
    assert "no readline() in /lib/x86_64-linux-gnu/libc.so.6" in \
        one_line_error(res.stderr, "bashreadline")

"""Helpers for the scheduler, lock and memory tool tests."""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile

import schema_check

from conftest import ROOT, Tool


def json_lines(text: str) -> list[dict]:
    """The JSON objects of a tool's stdout (the workload may print plain lines too)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def validate(tool: str, objs: list[dict]) -> None:
    schema = json.loads((ROOT / "pytracekit" / "schemas" / f"{tool}.schema.json").read_text())
    assert objs, "no JSON output"
    for obj in objs:
        schema_check.validate(obj, schema)


def switch_counts(text: str) -> tuple[int, int]:
    """The workload's own `nvcsw=V nivcsw=I` line (cpuburst mode)."""
    m = re.search(r"nvcsw=(\d+) nivcsw=(\d+)", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def traced_cpuburst(workload: str, tool_args: list[str], n: int, us: int) -> tuple[str, str]:
    """Run `workload cpuburst N US` under `tool -p PID`, and stop the tool as
    soon as the workload has printed its switch counts (it then sleeps 1 s):
    everything the tool saw happened before the workload counted."""
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        proc = subprocess.Popen([workload, "--go-file", go, "cpuburst", str(n), str(us)],
                                stdout=subprocess.PIPE, text=True)
        try:
            with Tool(*tool_args, "-p", str(proc.pid)) as tool:
                open(go, "w").close()
                counts = proc.stdout.readline()
                out, err = tool.stop()
        finally:
            proc.kill()
            proc.wait()
    assert tool.returncode == 0, err
    return out, counts


def bucket(hist: dict, low: int) -> int:
    return sum(b["count"] for b in hist["buckets"] if b["low"] == low)


def unseen_warned(stderr: str) -> int:
    """The count in families.sched's warning (0 without one): intervals a tool
    could not measure because no tracepoint reported their start or end."""
    m = re.search(r"^WARNING: (\d+) .* not measured: no tracepoint reported", stderr, re.M)
    return int(m.group(1)) if m else 0

"""Helpers for the probe-spec tools' tests (funccount, stackcount, funclatency)."""
import json
import os
import subprocess
from pathlib import Path

import schema_check

from conftest import ROOT, Tool

SCHEMAS = ROOT / "pytracekit" / "schemas"


def traced_pid_run(tool_args, workload, mode_args, tmp_path: Path, timeout: float = 60,
                   prefix=()):
    """Run the workload waiting on a go-file, attach `tool -p PID` to it, let it
    go, wait for it to finish, then stop the tool. Returns (stdout, stderr, rc).
    `prefix` runs it through an exec wrapper (chrt, taskset), same pid."""
    go = tmp_path / "go"
    proc = subprocess.Popen([*prefix, workload, "--go-file", str(go), *mode_args])
    try:
        tool = Tool(*tool_args, "-p", str(proc.pid)).start()
        go.touch()
        assert proc.wait(timeout=timeout) == 0
        out, err = tool.stop()
        return out, err, tool.returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# Busy-waiting functions measure wall-clock time; on a loaded machine a
# preemption would push a call into a later bucket. Real-time priority keeps
# the workload on its CPU for the few milliseconds it runs.
REALTIME = ("chrt", "-f", "10")


def validated_json_lines(tool: str, out: str) -> list[dict]:
    schema = json.loads((SCHEMAS / f"{tool}.schema.json").read_text())
    objs = [json.loads(line) for line in out.splitlines() if line.strip()]
    for obj in objs:
        schema_check.validate(obj, schema)
    return objs


def one_error_line(res, status: int) -> str:
    """The tool failed with `status` and said why in exactly one line."""
    assert res.returncode == status, (res.returncode, res.stdout, res.stderr)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    return lines[0]


def open_fds(kind: str) -> int:
    """How many of this process's fds are `kind` (anon_inode:bpf_link,
    anon_inode:[perf_event]...)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == kind
        except OSError:     # the fd listdir itself used
            pass
    return count

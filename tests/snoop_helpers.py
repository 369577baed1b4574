"""Helpers for the everyday tools' tests: JSON lines checked against the
tool's schema, and the end-of-run summary streaming tools print."""
from __future__ import annotations

import json
import re
from pathlib import Path

import schema_check

SCHEMAS = Path(__file__).resolve().parent.parent / "pytracekit" / "schemas"
_SUMMARY = re.compile(r"^(\d+) events captured, (\d+) lost(?:, (\d+) left unread at exit)?$", re.M)


def validated_json(tool: str, stdout: str) -> list[dict]:
    """Every line of `stdout` parsed and validated against <tool>.schema.json."""
    schema = json.loads((SCHEMAS / f"{tool}.schema.json").read_text())
    objects = []
    for line in stdout.splitlines():
        obj = json.loads(line)
        schema_check.validate(obj, schema)
        objects.append(obj)
    return objects


def summary(stderr: str) -> dict[str, int]:
    """The "N events captured, M lost[, U left unread at exit]" line."""
    match = _SUMMARY.search(stderr)
    assert match, f"no summary line in stderr:\n{stderr}"
    return {"captured": int(match[1]), "lost": int(match[2]), "unread": int(match[3] or 0)}


def one_line_error(stderr: str, tool: str) -> str:
    """A usage/runtime error: exactly one line, naming the tool, no traceback."""
    assert stderr.count("\n") == 1, stderr
    assert stderr.startswith(f"pytracekit {tool}: error: "), stderr
    return stderr.strip()


def start_to_file(args: list[str], stdout_path: Path, timeout: float = 60):
    """Start `pytracekit ARGS` with stdout going to a file (a pipe nobody reads
    would block the tool), return the Popen once its probes are attached."""
    import os
    import select
    import subprocess
    import sys
    from conftest import ROOT
    ready_r, ready_w = os.pipe()
    out = open(stdout_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "pytracekit", *args], stdout=out,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, pass_fds=(ready_w,),
                            env={**os.environ, "PYTRACEKIT_READY_FD": str(ready_w)})
    os.close(ready_w)
    out.close()
    ready, _, _ = select.select([ready_r], [], [], timeout)
    os.close(ready_r)
    assert ready, f"tool never became ready: {proc.communicate()[1]}"
    return proc


def perf_stat(events: list[str], command: list[str], system_wide: bool = False,
              timeout: float = 120, filter_: str | None = None) -> dict[str, int]:
    """perf stat's count of each tracepoint over `command` (-a: the whole
    system while it runs; `filter_`: perf's --filter on every event): the
    oracle the snoops' counts are checked against."""
    import subprocess
    from perf_oracle import perf_running
    argv = ["perf", "stat", "-x,"]
    for ev in events:
        argv += ["-e", ev] + (["--filter", filter_] if filter_ else [])
    # a timeout or Ctrl-C kills perf and the command it runs (perf_running)
    with perf_running(argv + (["-a"] if system_wide else []) + ["--", *command],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        _, stderr = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, stderr
    counts = {}
    for line in stderr.splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in events:
            counts[fields[2]] = int(fields[0])
    assert set(counts) == set(events), stderr
    return counts

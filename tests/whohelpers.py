"""Helpers shared by the list/stat/top/syscount/systrace tests."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from conftest import ROOT


def validate_json_lines(tool: str, text: str) -> list[dict]:
    """Every line parses and matches pytracekit/schemas/<tool>.schema.json."""
    import schema_check
    schema = json.loads((ROOT / "pytracekit" / "schemas" / f"{tool}.schema.json").read_text())
    objs = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert objs, "no JSON output"
    for obj in objs:
        schema_check.validate(obj, schema)
    return objs


class GatedWorkload:
    """The workload started with --go-file, so a tool can attach to its pid first."""

    def __init__(self, workload: str, tmp_path: Path, *args: str) -> None:
        self.go = tmp_path / "go"
        self.go.unlink(missing_ok=True)
        self.proc = subprocess.Popen([workload, "--go-file", str(self.go), *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.pid = self.proc.pid

    def release(self, timeout: float = 30) -> int:
        self.go.touch()
        return self.proc.wait(timeout=timeout)

    def __enter__(self) -> "GatedWorkload":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def as_nobody(*args: str) -> subprocess.CompletedProcess:
    """Run pytracekit as an unprivileged user (the not-root error path)."""
    from conftest import pytracekit_as_nobody
    return pytracekit_as_nobody(*args)

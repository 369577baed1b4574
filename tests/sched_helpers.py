"""Helpers for the scheduler, lock and memory tool tests."""
from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from conftest import ROOT


def json_lines(text: str) -> list[dict]:
    """The JSON objects of a tool's stdout (the workload may print plain lines too)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def validate(tool: str, objs: list[dict]) -> None:
    schema = json.loads((ROOT / "pytracekit" / "schemas" / f"{tool}.schema.json").read_text())
    assert objs, "no JSON output"
    for obj in objs:
        jsonschema.validate(obj, schema)


def switch_counts(text: str) -> tuple[int, int]:
    """The workload's own `nvcsw=V nivcsw=I` line (cpuburst mode)."""
    m = re.search(r"nvcsw=(\d+) nivcsw=(\d+)", text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def bucket(hist: dict, low: int) -> int:
    return sum(b["count"] for b in hist["buckets"] if b["low"] == low)

"""Reading the per-interval output of kmem, schedlat and mutexstat (-i)."""
from __future__ import annotations

import re
from collections import defaultdict

TIME_LINE = re.compile(r"^\d\d:\d\d:\d\d$")


def text_tables(out: str) -> list[list[str]]:
    """The lines of each table printed under an HH:MM:SS line."""
    tables: list[list[str]] = []
    for line in out.splitlines():
        if TIME_LINE.match(line):
            tables.append([])
        elif tables:
            tables[-1].append(line)
    return tables


def per_interval(objs: list[dict], field: str, keep=lambda o: True) -> dict[int, int]:
    """Sum of `field` over the JSON lines `keep` selects, by interval_no;
    every line but the loss report must carry its interval's time and number."""
    sums: dict[int, int] = defaultdict(int)
    for o in objs:
        if o["type"] == "loss":
            continue
        assert TIME_LINE.match(o["time"]) and o["interval_no"] >= 1, o
        if keep(o):
            sums[o["interval_no"]] += o[field]
    return dict(sums)

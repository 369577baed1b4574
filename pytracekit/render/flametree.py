"""The call tree both flame graphs draw (the HTML page, flamegraph.py, and the
SVG image, flamegraph_svg.py): stacks merged into a tree, laid out as
rectangles, coloured by frame kind or, for a differential graph, by change."""
from __future__ import annotations

import zlib
from functools import lru_cache
from typing import NamedTuple

from ..model import StackProfile

ROOT_NAME = "all"
SEARCH_FILL = "rgb(230,0,230)"


class Node:
    """A frame in the merged call tree: `value` includes the children.
    (A plain class with slots: big profiles make hundreds of thousands.)"""

    __slots__ = ("name", "kind", "value", "self_value", "before", "children")

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self.value = self.self_value = 0
        self.before = 0.0      # the normalized `before` value (differential only)
        self.children: dict[tuple[str, str], Node] = {}


class Rect(NamedTuple):
    """One frame as drawn: `start` and `value` in profile units along the x
    axis (divide by the root's value for fractions); `depth` 0 is the root."""

    name: str
    kind: str
    depth: int
    start: int
    value: int
    self_value: int
    fill: str
    before: float = 0.0


UNIT_LABELS = {"count": "samples", "nanoseconds": "ns", "microseconds": "us",
               "milliseconds": "ms", "bytes": "bytes"}


def unit_label(profile: StackProfile) -> str:
    """What to call a profile's values: samples, ns, us, bytes..."""
    if profile.unit == "count" and profile.value_type not in ("samples", ""):
        return profile.value_type
    return UNIT_LABELS.get(profile.unit, profile.unit or "samples")


def build_tree(profile: StackProfile, *, weight: float = 1.0,
               into: Node | None = None, as_before: bool = False) -> Node:
    """Merge every sample's stack under a root named `all`. With as_before the
    values go to `before` (scaled by weight) instead, for differential graphs."""
    root = into or Node(ROOT_NAME, "root")
    for sample in profile.samples:
        value = sample.value
        node = root
        _add(node, value, weight, as_before)
        for frame in sample.stack:
            key = (frame.name, frame.kind)
            child = node.children.get(key)
            if child is None:
                child = node.children[key] = Node(frame.name, frame.kind)
            node = child
            _add(node, value, weight, as_before)
        if not as_before:
            node.self_value += value
    return root


def _add(node: Node, value: int, weight: float, as_before: bool) -> None:
    if as_before:
        node.before += value * weight
    else:
        node.value += value


def _vary(name: str, salt: int = 0) -> float:
    """A stable 0..1 per name, so a function keeps its colour across graphs."""
    return (zlib.crc32(name.encode()) >> salt & 0xFF) / 255.0


@lru_cache(maxsize=65536)
def frame_fill(name: str, kind: str) -> str:
    """The colour of a frame in an ordinary flame graph."""
    v1, v2, v3 = _vary(name, 0), _vary(name, 8), _vary(name, 16)
    if kind == "kernel":
        rgb = (40 + 40 * v1, 175 + 40 * v2, 195 + 40 * v3)
    elif kind == "jit":
        rgb = (50 + 50 * v1, 185 + 45 * v2, 50 + 50 * v3)
    elif kind == "python":   # Python frames (pytracekit/symbolize/python): lime, apart from native
        rgb = (140 + 45 * v1, 195 + 40 * v2, 50 + 45 * v3)
    elif kind == "process":
        rgb = (165 + 25 * v1, 140 + 25 * v2, 225 + 25 * v3)
    elif kind in ("marker", "root"):
        rgb = (200, 200, 200)
    else:   # user: flamegraph.pl's "hot" range, red to yellow
        rgb = (205 + 50 * v1, 60 + 150 * v2, 35 + 35 * v3)
    return "rgb({},{},{})".format(*(int(c) for c in rgb))


def diff_fill(delta: float, peak: float) -> str:
    """Red for growth, blue for shrinkage, white-ish for no change."""
    if peak <= 0 or delta == 0:
        return "rgb(235,235,235)"
    fade = int(225 - 200 * min(1.0, abs(delta) / peak))
    return f"rgb(255,{fade},{fade})" if delta > 0 else f"rgb({fade},{fade},255)"


def layout(tree: Node | StackProfile, *, min_fraction: float = 0.0,
           fill=None) -> list[Rect]:
    """Rectangles of the flame graph, parents before children, siblings in
    name order (as flamegraph.pl sorts them). fill(node) -> colour; the
    default colours by kind. Nodes below min_fraction of the total are dropped."""
    root = build_tree(tree) if isinstance(tree, StackProfile) else tree
    colour = fill or (lambda n: frame_fill(n.name, n.kind))
    cutoff = root.value * min_fraction
    rects: list[Rect] = []
    todo = [(root, 0, 0)]
    while todo:
        node, depth, start = todo.pop()
        rects.append(Rect(node.name, node.kind, depth, start, node.value, node.self_value,
                          colour(node), round(node.before, 3)))
        offset = start   # children from the left edge; self time is the gap on the right
        placed = []
        for key in sorted(node.children):
            child = node.children[key]
            if child.value > 0 and child.value >= cutoff:
                placed.append((child, depth + 1, offset))
            offset += child.value
        todo.extend(reversed(placed))
    return rects

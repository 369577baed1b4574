"""What `report` and `diff` compute from a StackProfile: per-function self and
total weight, a top-down caller tree, and per-function changes between two
profiles. Pure functions; the text layout follows `perf report --stdio`."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Frame, Sample, StackProfile


def _code_frames(sample: Sample) -> list[Frame]:
    """The frames that are code: no process name, no user/kernel delimiter."""
    return [f for f in sample.stack if f.kind not in ("process", "marker")]


@dataclass
class FunctionRow:
    name: str
    self_value: int
    total_value: int


def function_table(profile: StackProfile) -> list[FunctionRow]:
    """Self (leaf) and total (anywhere on the stack, once per stack) per function,
    biggest self first."""
    selfs: dict[str, int] = {}
    totals: dict[str, int] = {}
    for s in profile.samples:
        code = _code_frames(s)
        if not code:
            continue
        leaf = code[-1].name
        selfs[leaf] = selfs.get(leaf, 0) + s.value
        for name in {f.name for f in code}:
            totals[name] = totals.get(name, 0) + s.value
    rows = [FunctionRow(n, selfs.get(n, 0), t) for n, t in totals.items()]
    rows.sort(key=lambda r: (-r.self_value, -r.total_value, r.name))
    return rows


def _pct(value: float, total: float) -> float:
    return 100.0 * value / total if total else 0.0


def function_table_text(profile: StackProfile, *, top: int = 20, sort: str = "self") -> str:
    rows = function_table(profile)
    if sort == "total":
        rows.sort(key=lambda r: (-r.total_value, -r.self_value, r.name))
    total = profile.total
    unit = "samples" if profile.unit == "count" else profile.unit
    lines = [f"# {'Total':>8} {'Self':>8} {'Total ' + unit:>16} {'Self ' + unit:>16}  Function",
             "# " + "-" * 70]
    for r in rows[:top]:
        lines.append(f"  {_pct(r.total_value, total):7.2f}% {_pct(r.self_value, total):7.2f}% "
                     f"{r.total_value:>16} {r.self_value:>16}  {r.name}")
    return "\n".join(lines)


@dataclass
class TreeNode:
    name: str
    value: int = 0
    children: dict[str, "TreeNode"] = field(default_factory=dict)


def caller_tree(profile: StackProfile) -> TreeNode:
    """Top-down: the process, then each caller towards the leaf."""
    root = TreeNode("all", 0)
    for s in profile.samples:
        root.value += s.value
        node = root
        for f in s.stack:
            if f.kind == "marker":
                continue
            node = node.children.setdefault(f.name, TreeNode(f.name))
            node.value += s.value
    return root


def caller_tree_text(profile: StackProfile, *, min_percent: float = 1.0,
                     max_depth: int = 64) -> str:
    """The tree as indented lines with percentages; branches under min_percent
    of the total are left out (and counted in one line)."""
    root = caller_tree(profile)
    total = root.value
    lines: list[str] = []
    hidden = 0

    def walk(node: TreeNode, depth: int) -> None:
        nonlocal hidden
        for child in sorted(node.children.values(), key=lambda n: (-n.value, n.name)):
            if _pct(child.value, total) < min_percent or depth >= max_depth:
                hidden += 1
                continue
            lines.append(f"{_pct(child.value, total):7.2f}%  {'  ' * depth}{child.name}")
            walk(child, depth + 1)

    walk(root, 0)
    if hidden:
        lines.append(f"  ({hidden} branches under {min_percent:g}% not shown)")
    return "\n".join(lines)


@dataclass
class FunctionChange:
    name: str
    before_self: float    # percent of the profile's total
    after_self: float
    before_total: float
    after_total: float
    # the same in the recording's unit per second (None: its duration is unknown)
    before_total_rate: float | None = None
    after_total_rate: float | None = None
    before_self_rate: float | None = None
    after_self_rate: float | None = None

    @property
    def self_delta(self) -> float:
        return self.after_self - self.before_self

    @property
    def total_delta(self) -> float:
        return self.after_total - self.before_total


def _rate(value: int, profile: StackProfile) -> float | None:
    return value / (profile.duration_ns / 1e9) if profile.duration_ns > 0 else None


def diff_functions(before: StackProfile, after: StackProfile) -> list[FunctionChange]:
    """Per-function shares of each profile (so different durations compare)
    and rates per second, the biggest change in total (inclusive) share first,
    then in self share: a caller whose callees grew ranks by what it grew."""
    a = {r.name: r for r in function_table(before)}
    b = {r.name: r for r in function_table(after)}
    ta, tb = before.total, after.total
    none = FunctionRow("", 0, 0)
    changes = []
    for name in set(a) | set(b):
        ra, rb = a.get(name, none), b.get(name, none)
        changes.append(FunctionChange(
            name, _pct(ra.self_value, ta), _pct(rb.self_value, tb),
            _pct(ra.total_value, ta), _pct(rb.total_value, tb),
            _rate(ra.total_value, before), _rate(rb.total_value, after),
            _rate(ra.self_value, before), _rate(rb.self_value, after)))
    changes.sort(key=lambda c: (-abs(c.total_delta), -abs(c.self_delta), c.name))
    return changes


def _rate_text(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1f}"


def diff_text(changes: list[FunctionChange], *, top: int = 20, min_delta: float = 0.01) -> str:
    """Ranked as given (diff_functions: by change in total share): total share
    before/after/change, total per second before/after, then the same shares
    for self."""
    lines = [f"# {'Total before':>12} {'Total after':>11} {'Delta':>8} {'Before/s':>9} "
             f"{'After/s':>9}   {'Self before':>11} {'Self after':>10} {'Delta':>8}  Function",
             "# " + "-" * 98]
    shown = [c for c in changes if abs(c.self_delta) >= min_delta
             or abs(c.total_delta) >= min_delta][:top]
    for c in shown:
        lines.append(f"  {c.before_total:11.2f}% {c.after_total:10.2f}% {c.total_delta:+7.2f}% "
                     f"{_rate_text(c.before_total_rate):>9} {_rate_text(c.after_total_rate):>9}"
                     f"   {c.before_self:10.2f}% {c.after_self:9.2f}% {c.self_delta:+7.2f}%  "
                     f"{c.name}")
    if not shown:
        lines.append("  (no function changed by more than "
                     f"{min_delta:g} percentage points)")
    return "\n".join(lines)

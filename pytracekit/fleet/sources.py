"""The tools `export` can run: one `Source` entry per tool.

A Source says which config keys the tool takes (with types and defaults), how
to start it from them, and how to turn its cumulative `read()` into metric
families. Tool modules are imported only when a config names them, so a
build without a tool fails at config-load time with one line, not at import.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ..errors import UsageError
from ..model import Histogram, StackProfile
from .metrics import LabelLimiter, counter_family, histogram_family


@dataclass(frozen=True)
class Option:
    type: type
    default: Any = None
    required: bool = False
    help: str = ""


@dataclass
class Source:
    name: str
    options: dict[str, Option]
    start: Callable[[Any, dict[str, Any]], Any]               # (tool module, options) -> session
    families: Callable[[Any, "Limits", dict[str, Any]], Iterable[Any]]  # (read(), limits, options)
    help: str = ""
    module: str = ""

    def load_module(self) -> Any:
        """The tool's module, or one clear line when this build lacks it."""
        try:
            return importlib.import_module(f"pytracekit.tools.{self.module or self.name}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("pytracekit"):
                raise UsageError(f"tool '{self.name}' is not available in this build") from None
            raise


@dataclass
class Limits:
    """Per-metric label limiters of one running source."""

    limit: int
    limiters: dict[str, LabelLimiter] = field(default_factory=dict)

    def __call__(self, metric: str) -> LabelLimiter:
        return self.limiters.setdefault(metric, LabelLimiter(self.limit))


PID = {"pid": Option(int, 0, help="only this process (0: all)")}


# -- shapes of read() results ---------------------------------------------------

def histograms_of(result: Any) -> dict[tuple[str, str], Histogram]:
    """(label, comm) -> Histogram from the shapes tools return: a Histogram, a
    {label: Histogram or object with .hist}, or an object with .hists (label ->
    Histogram, one label 0 when not split) and .names (label -> comm)."""
    if isinstance(result, Histogram):
        return {("", ""): result}
    if hasattr(result, "hists"):
        names = getattr(result, "names", {}) or {}
        if list(result.hists) in ([0], []):
            return {("", ""): h for h in result.hists.values()}
        return {(str(k), names.get(k, "")): h for k, h in result.hists.items()}
    if isinstance(result, dict):
        return {(str(k), ""): getattr(v, "hist", v) for k, v in result.items()}
    raise TypeError(f"no histograms in a {type(result).__name__}")


def histogram_source(metric: str, help_text: str, label: str) -> Callable:
    """Families of a histogram tool: unlabelled, or one series per `label`
    value (with `comm` where the tool names them)."""
    def families(result: Any, limits: Limits, _opts: dict[str, Any]) -> Iterable[Any]:
        hists = histograms_of(result)
        if list(hists) == [("", "")]:
            yield histogram_family(metric, help_text, {(): hists[("", "")]})
        elif any(comm for _k, comm in hists):
            yield histogram_family(metric, help_text, hists, (label, "comm"),
                                   limiter=limits(metric))
        else:
            yield histogram_family(metric, help_text, {(k,): h for (k, _c), h in hists.items()},
                                   (label,), limiter=limits(metric))
    return families


def _by_comm(profile: StackProfile, scale: float) -> dict[tuple, float]:
    rows: dict[tuple, float] = {}
    for s in profile.samples:
        rows[(s.comm,)] = rows.get((s.comm,), 0) + s.value * scale
    return rows


# -- the sources -----------------------------------------------------------------

def _funclatency_families(result: Any, limits: Limits, opts: dict[str, Any]) -> Iterable[Any]:
    hists = {(label or opts["spec"],): lat.hist for label, lat in result.items()}
    sums = {(label or opts["spec"],): lat.total for label, lat in result.items()}
    yield histogram_family("pytracekit_funclatency", "Time spent in traced functions.", hists,
                           ("function",), sums=sums, limiter=limits("funclatency"))


def _funccount_families(result: Any, limits: Limits, _opts: dict[str, Any]) -> Iterable[Any]:
    yield counter_family("pytracekit_function_calls", "Calls of traced functions.",
                         dict(result.rows), ("function",), limiter=limits("funccount"))


def _syscount_families(result: Any, limits: Limits, opts: dict[str, Any]) -> Iterable[Any]:
    labels = ("pid", "comm") if opts["by_process"] else ("syscall",)
    calls = {row.key if opts["by_process"] else (row.key[0],): row.count for row in result}
    yield counter_family("pytracekit_syscalls", "System calls.", calls, labels,
                         limiter=limits("syscalls"))
    if opts["latency"]:
        secs = {row.key if opts["by_process"] else (row.key[0],): row.total_ns / 1e9
                for row in result}
        yield counter_family("pytracekit_syscall_time_seconds", "Time spent in system calls.",
                             secs, labels, limiter=limits("syscall_time"))


def _offcpu_families(result: StackProfile, limits: Limits, _opts: dict) -> Iterable[Any]:
    yield counter_family("pytracekit_offcpu_seconds", "Time threads spent off-CPU, by comm.",
                         _by_comm(result, 1e-6), ("comm",), limiter=limits("offcpu"))


def _profile_families(result: StackProfile, limits: Limits, _opts: dict) -> Iterable[Any]:
    yield counter_family("pytracekit_cpu_samples", "Timed on-CPU stack samples, by comm.",
                         _by_comm(result, 1), ("comm",), limiter=limits("cpu_samples"))
    yield counter_family("pytracekit_cpu_seconds",
                         "On-CPU time estimated from samples x sampling period, by comm.",
                         _by_comm(result, result.period / 1e9), ("comm",),
                         limiter=limits("cpu_seconds"))


def _biolatency(module: Any, opts: dict[str, Any]) -> Any:
    session = module.start(per_disk=opts["per_disk"])
    session.ready()
    return session


def _ready(session: Any) -> Any:
    """Tools whose start() leaves ready() to the caller (the sched tools)."""
    session.ready()
    return session


def _target(pid: int) -> Any:
    from ..engine.runner import Target
    return Target.from_options(pid or None, ())


SOURCES: dict[str, Source] = {s.name: s for s in [
    Source("funclatency",
           {"spec": Option(str, required=True, help="probe spec, e.g. /bin/app:func"),
            "regex": Option(bool, False), "per_function": Option(bool, False), **PID},
           lambda m, o: m.start(o["spec"], pid=o["pid"] or None, regex=o["regex"],
                                unit="nsecs", per_function=o["per_function"], announce=False),
           _funclatency_families, "log2 latency histogram of functions"),
    Source("funccount",
           {"spec": Option(str, required=True, help="probe spec, e.g. c:malloc"),
            "regex": Option(bool, False), **PID},
           lambda m, o: m.start(o["spec"], pid=o["pid"] or None, regex=o["regex"],
                                announce=False),
           _funccount_families, "calls per probe"),
    Source("runqlat", {**PID, "per_pid": Option(bool, False)},
           lambda m, o: _ready(m.start(pid=o["pid"], label_by=1 if o["per_pid"] else 0)),
           histogram_source("pytracekit_runqlat", "Run queue latency.", "pid"),
           "run queue latency histogram"),
    Source("cpudist", {**PID, "offcpu": Option(bool, False)},
           lambda m, o: _ready(m.start(pid=o["pid"], offcpu=o["offcpu"])),
           histogram_source("pytracekit_cpudist", "On-CPU (or off-CPU) time per run.", "pid"),
           "time on CPU per scheduling"),
    Source("biolatency", {"per_disk": Option(bool, False)}, _biolatency,
           histogram_source("pytracekit_biolatency", "Block I/O latency.", "disk"),
           "block I/O latency histogram"),
    Source("syscount", {**PID, "by_process": Option(bool, False), "latency": Option(bool, True)},
           lambda m, o: m.start(_target(o["pid"]), by_process=o["by_process"],
                                latency=o["latency"]),
           _syscount_families, "system calls by syscall or process"),
    Source("offcputime", {**PID, "min_us": Option(int, 1)},
           lambda m, o: m.start(pids=[o["pid"]] if o["pid"] else None, min_us=o["min_us"]),
           _offcpu_families, "off-CPU time totals by comm"),
    Source("profile", {**PID, "frequency": Option(int, 49),
                       "python": Option(bool, True, help="Python frames of CPython processes")},
           lambda m, o: m.start(pids=[o["pid"]] if o["pid"] else None,
                                frequency=o["frequency"], python=o["python"]),
           _profile_families, "on-CPU samples by comm"),
]}


def source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise UsageError(f"unknown tool '{name}' (known: {', '.join(sorted(SOURCES))})") \
            from None

"""Compose probes in Python: your BPF C, any probe spec, results as Python values.

    from pytracekit.api import Tracer, render

    with Tracer(BPF_C, pid=1234) as tracer:          # or command=["ls", "-l"]
        tracer.probe("c:malloc", "on_malloc")         # any spec probes.py accepts
        tracer.probe("t:syscalls:sys_enter_openat", "on_open")
        tracer.start("Tracing... Hit Ctrl-C to end.")
        tracer.run(duration=5)                        # or interval=1, on_interval=...
        print(render(tracer.histogram("sizes", unit="bytes")))

`Tracer` owns the whole lifecycle the tools follow: specs are parsed and
resolved first (clear errors before anything is loaded), the target command
is held before exec so probes see its first instruction, `FILTER_PID` is
compiled in, USDT contexts are handed to BCC, and `close()` detaches
everything. The C source includes "vmlinux.h" and "pytracekit.h" (see
bpf/pytracekit.h for the filters, loss counters and log2 helpers). A function
attached to a tracepoint returns PTK_TP_PASS: 0 drops the event for every
other perf user of that tracepoint.

The built-in tools funccount, stackcount and funclatency are written on it.
"""
from __future__ import annotations

import ctypes
from typing import Any, Callable, Iterable, Mapping

from .probes import specs as probemod
from .errors import UsageError
from .engine.loader import Program
from .model import Counts, Histogram, LossReport, StackProfile
from .probes.specs import ProbeSpec, ResolvedProbe
from .engine.runner import Target, announce, check_pid, run_until_done


class Tracer:
    """One BPF program, its probes, its target, and reading its maps."""

    def __init__(self, source: str | None = None, *, file: str | None = None,
                 name: str = "custom", defines: Mapping[str, Any] | None = None,
                 replace: Mapping[str, str] | None = None, pid: int | None = None,
                 command: Iterable[str] = (), limit: int = probemod.DEFAULT_LIMIT) -> None:
        if (source is None) == (file is None):
            raise ValueError("give either BPF C source text or file= (a bpf/<name>.bpf.c name)")
        if pid and tuple(command):
            raise UsageError("give either -p PID or -- COMMAND, not both")
        self.source, self.file = source, file
        self.name = file or name
        self.defines = dict(defines or {})
        self.replace = dict(replace or {})
        self.pid = check_pid(pid) if pid else None
        self.command = tuple(command)
        self.limit = limit
        self.attachments: list[tuple[ResolvedProbe, str]] = []
        self.multi_attachments: list[tuple[ResolvedProbe, str, int]] = []
        self.prog: Program | None = None
        self.target: Target | None = None
        # run()'s poll when given none: what must be serviced while it runs
        # (stackcount's in-kernel unwinder: a held command waits at its entry)
        self.default_poll: Callable[[int], None] | None = None

    # -- probes -------------------------------------------------------------

    def resolve(self, spec: str | ProbeSpec, *, regex: bool = False,
                default_kind: str = "p") -> list[ResolvedProbe]:
        """What a spec matches here (for -p, libraries as that process maps them)."""
        if isinstance(spec, str):
            spec = probemod.parse_spec(spec, regex=regex, default_kind=default_kind)
        return probemod.resolve(spec, pid=self.pid, limit=self.limit)

    def probe(self, spec: str | ProbeSpec | ResolvedProbe, fn_name: str, *,
              regex: bool = False) -> list[ResolvedProbe]:
        """Attach BPF function `fn_name` to every match of `spec` at start()."""
        found = [spec] if isinstance(spec, ResolvedProbe) else self.resolve(spec, regex=regex)
        for probe in found:
            self.attachments.append((probe, fn_name))
        self._check_limit()
        return found

    def probe_multi(self, probes: Iterable[ResolvedProbe], fn_name: str,
                    cookies: Iterable[int]) -> None:
        """Attach BPF function `fn_name` to entry uprobes `probes` at start()
        through one uprobe_multi link per binary, each probe with its cookie
        (read with bpf_get_attach_cookie(ctx)). Needs
        kernel.features.uprobe_multi_available(); probe() is the fallback."""
        for probe, cookie in zip(probes, cookies):
            if probe.kind != "uprobe":
                raise ValueError(f"uprobe_multi links take entry uprobes, not {probe.kind}")
            self.multi_attachments.append((probe, fn_name, cookie))
        self._check_limit()

    def _check_limit(self) -> None:
        count = len(self.attachments) + len(self.multi_attachments)
        if count > self.limit:
            raise UsageError(f"{count} probes, more than the limit of {self.limit}: "
                             "narrow the patterns")

    def _attach_multi(self) -> None:
        if not self.multi_attachments:
            return
        from .symbolize import elf
        assert self.prog is not None and self.target is not None
        links: dict[tuple[str, str], list[tuple[ResolvedProbe, int]]] = {}
        for probe, fn_name, cookie in self.multi_attachments:
            links.setdefault((probe.binary, fn_name), []).append((probe, cookie))
        for (binary, fn_name), members in links.items():
            offsets = [elf.file_offset(binary, p.address) + p.offset for p, _ in members]
            self.prog.attach_uprobe_multi(binary, fn_name, offsets, [c for _, c in members],
                                          pid=self.target.pid or -1,
                                          names=[p.name for p, _ in members])

    # -- lifecycle ----------------------------------------------------------

    def start(self, message: str | None = None,
              prepare: Callable[[Program], None] | None = None) -> "Tracer":
        """Hold the command, compile with its pid, attach everything;
        `prepare(program)` runs between compiling and attaching. EXEC_PID is
        the held command's pid (0 without one)."""
        renames = probemod.program_defines(self.attachments)
        self.target = Target.from_options(self.pid, self.command)
        defines = {"FILTER_PID": self.target.pid,
                   "EXEC_PID": self.target.pid if self.command else 0,
                   **self.defines, **renames}
        usdt = [p.usdt_context(fn, self.pid) for p, fn in self.attachments if p.kind == "usdt"]
        if self.file is not None:
            self.prog = Program.from_file(self.file, defines, self.replace, usdt=usdt)
        else:
            text = self.source or ""
            for token, code in self.replace.items():
                text = text.replace(token, code)
            self.prog = Program.from_text(self.name, text, defines, usdt=usdt)
        if prepare is not None:
            prepare(self.prog)
        for probe, fn_name in self.attachments:
            probe.attach(self.prog, fn_name, pid=self.target.pid or None)
        self._attach_multi()
        self.prog.ready()
        if message:
            announce(message)
        return self

    def run(self, *, duration: float | None = None, interval: float | None = None,
            on_interval: Callable[[], None] | None = None,
            poll: Callable[[int], None] | None = None) -> str:
        """Release the command and wait: duration, command exit, Ctrl-C or SIGTERM."""
        if self.target is None:
            self.start()
        assert self.target is not None
        return run_until_done(self.target, duration=duration, interval=interval,
                              on_interval=on_interval, poll=poll or self.default_poll)

    def close(self) -> None:
        if self.prog is not None:
            self.prog.close()
            self.prog = None
        if self.target is not None:
            self.target.finish()
            self.target = None

    def __enter__(self) -> "Tracer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------

    def __getitem__(self, map_name: str) -> Any:
        assert self.prog is not None, "start() first"
        return self.prog[map_name]

    def loss(self) -> LossReport:
        return self.prog.loss() if self.prog is not None else LossReport()

    def table(self, map_name: str) -> dict[Any, Any]:
        """A map as plain Python: ints, char arrays->str, struct values->dicts,
        struct keys->tuples of their fields (hashable); per-CPU values summed."""
        table = self[map_name]
        percpu = "PerCpu" in type(table).__name__
        out = {}
        for key, value in table.items():
            value = table.sum(key) if percpu else value
            out[to_python(key, hashable=True)] = to_python(value)
        return out

    def histogram(self, map_name: str, *, unit: str = "", label: str = "",
                  where: Callable[[Any], bool] | None = None) -> Histogram:
        """A log2 histogram from a map keyed by the slot (an int, or a struct
        with a `slot` field such as ptk_hist_key; `where` picks keys)."""
        hist = Histogram(unit=unit, label=label)
        table = self[map_name]
        percpu = "PerCpu" in type(table).__name__
        for key, value in table.items():
            if where is not None and not where(key):
                continue
            count = (table.sum(key) if percpu else value).value
            slot = key.slot if hasattr(key, "slot") else key.value
            if count:
                hist.buckets[slot] = hist.buckets.get(slot, 0) + count
        return hist

    def counts(self, map_name: str, columns: tuple[str, ...], *,
               value_name: str = "COUNT") -> Counts:
        """A count table; a struct key gives one column per field, in order."""
        counts = Counts(columns, value_name=value_name)
        for key, value in self.table(map_name).items():
            row = key if isinstance(key, tuple) else (key,)
            counts.rows[row] = counts.rows.get(row, 0) + int(value)
        return counts

    def stacks(self, counts_map: str, stack_map: str, **options: Any) -> StackProfile:
        """A StackProfile from a map keyed by `struct ptk_stack_key` (see stacks.py)."""
        from .collect.stack_maps import read_profile
        from .symbolize.symbols import Symbolizer
        assert self.prog is not None
        return read_profile(self[counts_map], self[stack_map], Symbolizer(self.prog.bpf),
                            self.loss(), **options)


def to_python(value: Any, *, hashable: bool = False) -> Any:
    """ctypes values as plain Python values (structs as dicts, or as tuples
    of their fields when `hashable`, for map keys)."""
    if isinstance(value, ctypes.Structure):
        fields = [(name, to_python(getattr(value, name), hashable=hashable))
                  for name, *_ in value._fields_]
        return tuple(v for _, v in fields) if hashable else dict(fields)
    if isinstance(value, bytes):   # char arrays read through a struct field
        return value.split(b"\0", 1)[0].decode(errors="replace")
    if isinstance(value, ctypes.Array):
        if value._type_ is ctypes.c_char:
            return bytes(value).split(b"\0", 1)[0].decode(errors="replace")
        items = [to_python(v, hashable=hashable) for v in value]
        return tuple(items) if hashable else items
    if hasattr(value, "value"):
        return value.value
    return value


def render(result: Histogram | Counts | StackProfile | LossReport, **options: Any) -> str:
    """Text as pytracekit's tools print it: log2 histograms, tables, folded stacks."""
    from .render import text
    if isinstance(result, Histogram):
        return text.log2_histogram(result, options.get("value_name"))
    if isinstance(result, Counts):
        return text.counts_table(result, options.get("limit"))
    if isinstance(result, LossReport):
        return text.loss_line(result)
    if isinstance(result, StackProfile):
        return "\n".join(";".join(f.name for f in s.stack) + f" {s.value}"
                         for s in result.merged().samples)
    raise TypeError(f"cannot render {type(result).__name__}")

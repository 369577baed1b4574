"""stat: count events like `perf stat`.

Every event is a perf_event_open counter, as in perf stat: per CPU with -a/-C,
per thread with -p, inherited and enabled on exec for a command. A tracepoint's
--filter becomes the kernel's own (ftrace) filter where the kernel would test
exactly what the expression means; only the rest (strings behind user
pointers, `int` arguments stored in 8 bytes) are counted by a generated BPF
program, so a plain run neither compiles nor imports BCC.
"""
from __future__ import annotations

import fnmatch
import os
import resource
import time

import click

from ..cli import options
from ..engine import settings
from ..errors import DryRunComplete, EbpfPrinted, NotFoundError, UsageError
from ..kernel import perf, tracefs
from ..probes.perf_events import DEFAULT, DETAILED, EventSpec, parse, parse_list, supported
from ..render import perfstat
from ..render.output import Output
from ..engine.runner import Target, announce
from ..families.periodic import interval_and_count, run_periodic
from ..engine.session import ProgramSession

# a filter the kernel cannot apply (a string behind a user pointer): BPF is compiled
DRY_RUN_ARGS = ["-a", "-e", "syscalls:sys_enter_openat", "--filter",
                'filename == "/nonexistent"', "--duration", "0"]
_VALUE_OPTIONS = {"-e", "--event", "--filter", "-p", "--pid", "-C", "--cpu", "-I",
                  "--interval-ms", "--interval", "-r", "--repeat", "--duration"}


class StatCommand(click.Command):
    """perf's `--filter` applies to the -e event before it; click does not keep
    that order, so each --filter is tagged here with its event's index."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out, events, i = [], 0, 0
        while i < len(args):
            arg = args[i]
            if arg == "--" or not arg.startswith("-"):
                out += args[i:]
                break
            if arg in ("-e", "--event") and i + 1 < len(args):
                events += len(args[i + 1].split(","))
            elif arg.startswith("--event=") or (arg.startswith("-e") and len(arg) > 2):
                events += len(arg.split("=", 1)[-1].removeprefix("-e").split(","))
            if arg == "--filter" and i + 1 < len(args):
                out += [arg, f"{events - 1}\t{args[i + 1]}"]
                i += 2
                continue
            # click tries a short option as a long one first, and on the miss
            # imports difflib for a did-you-mean list it then drops
            out.append("--event" if arg == "-e" and i + 1 < len(args) else arg)
            if arg in _VALUE_OPTIONS and i + 1 < len(args):
                out.append(args[i + 1])
                i += 1
            i += 1
        return super().parse_args(ctx, out)


def expand(specs: list[EventSpec], filters: dict[int, str]) -> tuple[list[EventSpec],
                                                                   dict[int, str]]:
    """Tracepoint globs (`sched:*`) become every matching tracepoint, each
    keeping the glob's filter; returns the events and filters by new index."""
    out: list[EventSpec] = []
    out_filters: dict[int, str] = {}
    for index, spec in enumerate(specs):
        names = [spec.name]
        if spec.kind == "tracepoint" and any(ch in spec.name for ch in "*?["):
            names = [n for n in tracefs.list_tracepoints() if fnmatch.fnmatchcase(n, spec.name)]
            if not names:
                raise NotFoundError(f"no tracepoint matches '{spec.name}' "
                                    "(`pytracekit list 'CATEGORY:*'` lists them)")
        for name in names:
            if index in filters:
                out_filters[len(out)] = filters[index]
            out.append(spec if name == spec.name else EventSpec(name, "tracepoint"))
    return out, out_filters


def tracepoint_source(events: list[EventSpec], filters: dict[int, str],
                      slots: list[int]) -> str:
    """One counting function per event in `slots`, with its filter compiled in."""
    from ..probes.tpfilter import compile_filter
    chunks = []
    for slot in slots:
        ev = events[slot]
        tp = tracefs.tracepoint(ev.category, ev.event)
        compiled = compile_filter(filters.get(slot, ""), tp, f"filter{slot}")
        # PTK_TP_PASS, never 0: 0 would hide the event from every perf user.
        chunks.append(f"{compiled.helpers}\nint count_{slot}(void *ctx)\n{{\n"
                      f"    if ({compiled.expression})\n        count_event({slot});\n"
                      "    return PTK_TP_PASS;\n}\n")
    return "\n".join(chunks)


def _cpu_list(text: str | None) -> list[int]:
    if not text:
        return []
    cpus: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            cpus += range(int(low), int(high or low) + 1)
    except ValueError:
        raise UsageError(f"malformed CPU list '{text}': give e.g. 0 or 0,2 or 0-1") from None
    ncpu = os.cpu_count() or 1
    bad = [c for c in cpus if c < 0 or c >= ncpu]
    if bad:
        raise UsageError(f"no CPU {bad[0]}: this machine has CPUs 0-{ncpu - 1}")
    return cpus


def kernel_filters(events: list[EventSpec], filters: dict[int, str],
                   probes: list[int]) -> dict[int, str]:
    """The tracepoint events a perf counter counts exactly, with the ftrace
    filter each needs ("" for none); the others need BPF. A filter the kernel
    refuses (its grammar differs in a corner) is left to BPF too. The counters
    that asked the kernel are appended to `probes`, for the caller to keep open
    while it counts: closing a tracepoint's last perf event waits for the
    tracepoint to be unregistered (tens of ms, more on a busy machine)."""
    out: dict[int, str] = {}
    for slot, ev in enumerate(events):
        if ev.kind != "tracepoint":
            continue
        text = filters.get(slot, "").strip()
        if not text:
            out[slot] = ""
            continue
        from ..probes.tpfilter import ftrace_filter
        kernel_text = ftrace_filter(text, tracefs.tracepoint(ev.category, ev.event))
        if kernel_text is not None and _kernel_accepts(ev, kernel_text, probes):
            out[slot] = kernel_text
    return out


def _kernel_accepts(ev: EventSpec, text: str, probes: list[int]) -> bool:
    """Set the filter on a disabled counter of our own (it never counts)."""
    probes.append(perf.open_counter(perf.PERF_TYPE_TRACEPOINT,
                                    tracefs.tracepoint_id(ev.category, ev.event),
                                    pid=0, cpu=-1, disabled=True))
    try:
        perf.set_filter(probes[-1], text)
        return True
    except OSError:
        return False


class CounterSession(ProgramSession):
    """Counters for one set of events; `rearm(target)` before every run."""

    def __init__(self, events: list[EventSpec], filters: dict[int, str], target: Target,
                 cpus: list[int], system_wide: bool) -> None:
        self.events, self.cpus, self.system_wide = events, cpus, system_wide
        self.fds: dict[int, list[int] | None] = {}
        self.prog = None
        self.base = [0] * len(events)
        self.probes: list[int] = []
        try:
            self._setup(events, filters, target, cpus)
        except BaseException:
            self.close()
            raise

    def _setup(self, events: list[EventSpec], filters: dict[int, str], target: Target,
               cpus: list[int]) -> None:
        self.kernel_filters = kernel_filters(events, filters, self.probes)
        bpf_slots = [slot for slot, ev in enumerate(events)
                     if ev.kind == "tracepoint" and slot not in self.kernel_filters]
        if settings.current().verbose:
            for slot, ev in enumerate(events):
                how = ("BPF program" if slot in bpf_slots else "perf counter" +
                       (f", kernel filter '{self.kernel_filters[slot]}'"
                        if self.kernel_filters.get(slot) else ""))
                announce(f"stat: {ev.label}: {how}")
        if bpf_slots:
            from ..engine import follow   # imports BCC: only when a filter needs it
            from ..engine.loader import code_slot
            mask = sum(1 << c for c in cpus)
            code = tracepoint_source(events, filters, bpf_slots)
            self.prog = follow.load("stat", target, {"MAX_EVENTS": max(len(events), 1),
                                                     "CPU_MASK": f"{mask}ULL"},
                                    {code_slot("STAT_PROBES"): code})
            for slot in bpf_slots:
                ev = events[slot]
                self.prog.attach_tracepoint(ev.category, ev.event, f"count_{slot}")
            self.prog.ready()
        elif settings.current().ebpf or settings.current().dry_run:
            # nothing to compile: say so, as a successful --ebpf/--dry-run
            why = ("every event is a perf_event_open counter (BPF is loaded only for a "
                   "--filter the kernel cannot apply, e.g. 'filename == \"/tmp/x\"')")
            if settings.current().ebpf:
                click.echo(f"/* stat: no BPF program: {why} */")
                raise EbpfPrinted()
            raise DryRunComplete([])

    def rearm(self, target: Target) -> None:
        """Open the perf counters for this run's target; zero every count."""
        self._close_counters()
        if self.prog is not None and target.command:
            from ..engine import follow
            follow.set_root(self.prog, target.pid)
        for slot, ev in enumerate(self.events):
            if ev.kind != "tracepoint" or slot in self.kernel_filters:
                self.fds[slot] = self._open(slot, ev, target)
        self.base = [0] * len(self.events)
        self.base = [v or 0 for v in self.read()]

    def _open(self, slot: int, ev: EventSpec, target: Target) -> list[int] | None:
        if ev.kind == "tracepoint":
            ev_type, config = perf.PERF_TYPE_TRACEPOINT, tracefs.tracepoint_id(ev.category,
                                                                              ev.event)
        elif not supported(ev.kind, ev.config)[0]:
            return None
        else:
            ev_type, config = ev.type, ev.config
        common = dict(exclude_user=not ev.user, exclude_kernel=not ev.kernel)
        if self.system_wide:
            places = [(-1, c) for c in (self.cpus or range(os.cpu_count() or 1))]
            extra: dict[str, bool] = {}
        elif target.command:
            places, extra = [(target.pid, -1)], dict(inherit=True, disabled=True,
                                                     enable_on_exec=True)
        else:
            tids = [int(t) for t in os.listdir(f"/proc/{target.pid}/task")]
            places, extra = [(t, -1) for t in tids], dict(inherit=True)
        fds = []
        kernel_filter = self.kernel_filters.get(slot, "")
        for pid, cpu in places:
            try:
                fd = perf.open_counter(ev_type, config, pid=pid, cpu=cpu, **common, **extra)
            except OSError:
                continue   # a thread that just exited, an offline CPU
            fds.append(fd)
            if kernel_filter:
                perf.set_filter(fd, kernel_filter)   # accepted once already (_kernel_accepts)
        return fds

    def read(self) -> list[int | None]:
        """Counts since the last rearm(); None for an event this machine cannot count."""
        values: list[int | None] = []
        table = self.prog["counts"] if self.prog is not None else None
        for slot, ev in enumerate(self.events):
            if ev.kind == "tracepoint" and slot not in self.kernel_filters:
                total = sum(table[table.Key(slot)])
            else:
                fds = self.fds.get(slot)
                if fds is None:
                    values.append(None)
                    continue
                total = sum(perf.read_counter(fd) for fd in fds)
            values.append(total - self.base[slot])
        return values

    def _close_counters(self) -> None:
        for fds in self.fds.values():
            for fd in fds or []:
                os.close(fd)
        self.fds.clear()

    def close(self) -> None:
        self._close_counters()
        while self.probes:
            os.close(self.probes.pop())
        if self.prog is not None:
            self.prog.close()


def start(events: list[EventSpec], filters: dict[int, str] | None = None,
          target: Target | None = None, cpus: list[int] | None = None,
          system_wide: bool = False) -> CounterSession:
    """Compile, attach and open counters for one run (export/record reuse this)."""
    target = target or Target()
    session = CounterSession(events, filters or {}, target, cpus or [], system_wide)
    session.rearm(target)
    return session


def _events(event_specs: tuple[str, ...], filter_specs: tuple[str, ...], detailed: bool,
            system_wide: bool) -> tuple[list[EventSpec], dict[int, str]]:
    if event_specs:
        events = parse_list(event_specs)
    else:
        clock = "cpu-clock" if system_wide else "task-clock"
        events = [parse(n.format(clock=clock)) for n in DEFAULT]
    filters = _filters(filter_specs, events)
    if detailed:
        events += [parse(n) for n in DETAILED]
    return expand(events, filters)


def _filters(values: tuple[str, ...], events: list[EventSpec]) -> dict[int, str]:
    """`--filter` values arrive tagged with their event's index (StatCommand)."""
    out = {}
    for value in values:
        index, _, text = value.partition("\t")
        slot = int(index) if index.lstrip("-").isdigit() else -1
        if slot < 0 or slot >= len(events) or events[slot].kind != "tracepoint":
            raise UsageError("--filter must follow a tracepoint event: "
                             "-e CATEGORY:EVENT --filter 'EXPR'")
        out[slot] = text
    return out


def _what(target: Target, cpus: list[int], system_wide: bool) -> str:
    if target.command:
        return " ".join(target.command)
    if target.pid:
        return f"process id '{target.pid}'"
    if cpus:
        return f"CPU(s) {','.join(map(str, cpus))}"
    return "system wide"


@click.command("stat", cls=StatCommand, context_settings=options.TOOL_CONTEXT)
@click.option("-e", "--event", "event_specs", multiple=True,
              help="Events to count, comma separated: NAME[:u|k] or CATEGORY:EVENT (globs).")
@click.option("--filter", "filter_specs", multiple=True,
              help="Filter for the tracepoint given just before (ftrace syntax).")
@click.option("-a", "--all-cpus", "system_wide", is_flag=True, help="Count on every CPU.")
@options.pid_option("-p")
@click.option("-C", "--cpu", "cpu_text", default=None, help="Count on these CPUs only (0,2 or 0-1).")
@click.option("-d", "--detailed", is_flag=True, help="Add the cache events (L1, LLC).")
@click.option("-I", "--interval-ms", "interval_ms", type=click.IntRange(min=10), default=None,
              help="Print counts every this many milliseconds.")
@options.interval_option()
@click.option("-r", "--repeat", type=click.IntRange(min=1), default=1,
              help="Run the command this many times; show mean and variance.")
@options.duration_option()
@options.output_options()
@options.standard
@options.command_argument
def command(event_specs, filter_specs, system_wide, pid, cpu_text, detailed, interval_ms,
            interval, repeat, duration, out, command):
    """Count events for a command, a process, CPUs or the whole system."""
    # `stat 5 1 -- CMD` as the summary tools (perf has -I MS and --interval-count)
    interval, count, command = interval_and_count(command, interval, None)
    if interval is not None:   # the long option every tool has, in seconds
        if interval_ms is not None:
            raise UsageError("give -I MS or --interval SECONDS, not both")
        interval_ms = max(10, round(interval * 1000))
    cpus = _cpu_list(cpu_text)
    system_wide = system_wide or bool(cpus)
    if not (system_wide or pid or command):
        raise UsageError("give -a, -C CPUS, -p PID or -- COMMAND to say what to count")
    if system_wide and (pid or command) and not command:
        raise UsageError("-a/-C count every process: leave out -p")
    if repeat > 1 and not command:
        raise UsageError("-r repeats a command: give -- COMMAND")
    events, filters = _events(event_specs, filter_specs, detailed, system_wide)
    if not (settings.current().ebpf or settings.current().dry_run) and os.geteuid() != 0:
        from ..engine.loader import require_root
        require_root()
    counters = [perfstat.CounterResult(e.label, e.kind) for e in events]
    elapsed: list[float] = []
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    target = Target.from_options(pid, command)
    if system_wide and command:   # perf stat -a -- CMD: everything while CMD runs
        follow_target = Target()
    else:
        follow_target = target
    session = None
    try:
        session = CounterSession(events, filters, follow_target, cpus, system_wide)
        for run in range(repeat):
            if run:
                target = Target.from_options(None, command)
            session.rearm(target if not system_wide else follow_target)
            if run == 0:
                announce(f"Counting {len(events)} event(s)... Hit Ctrl-C to end.")
            values, ended = _run_once(session, target, duration, interval_ms, count, counters,
                                      out)
            elapsed.append(ended - target.started)
            for c, v in zip(counters, values):
                if v is None:
                    c.supported = False
                else:
                    c.values.append(v)
            target.finish()
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        user_s = usage.ru_utime - usage_before.ru_utime if command else None
        sys_s = usage.ru_stime - usage_before.ru_stime if command else None
        loss = session.loss()
        what = _what(target, cpus, system_wide)
        out.emit(text=lambda: perfstat.report(what, counters, elapsed, user_s, sys_s),
                 json=lambda: _json_objects(what, counters, elapsed, user_s, sys_s))
        out.loss(loss)
    finally:
        if session is not None:
            session.close()
        target.finish()


def _run_once(session: CounterSession, target: Target, duration: float | None,
              interval_ms: int | None, count: int | None,
              counters: list[perfstat.CounterResult],
              out: Output) -> tuple[list[int | None], float]:
    """One run: its counts and when it ended (the moment a command exited)."""
    last = [0] * len(counters)
    if interval_ms:
        out.line(perfstat.INTERVAL_HEADER)

    def tick() -> None:
        t = time.monotonic() - target.started
        now = session.read()
        for i, (c, v) in enumerate(zip(counters, now)):
            delta = (v or 0) - last[i]
            out.emit(text=lambda: perfstat.interval_line(t, perfstat.CounterResult(
                         c.label, c.kind, supported=v is not None), delta),
                     json=lambda: {"type": "interval", "time_s": round(t, 9), "event": c.label,
                                   "supported": v is not None,
                                   "value": delta if v is not None else None})
            last[i] = v or 0

    if not target.command:
        target.started = time.monotonic()   # a command's clock starts at its release
    # intervals only: the totals after the run are the end's report
    run_periodic(target, duration=duration, interval=interval_ms / 1000 if interval_ms else None,
                 count=count, report=lambda final: None if final else tick())
    return session.read(), target.exited_at or time.monotonic()


def _json_objects(what: str, counters: list[perfstat.CounterResult], elapsed: list[float],
                  user_s: float | None, sys_s: float | None) -> list[dict]:
    return [*({"type": "counter", "event": c.label, "kind": c.kind,
               "supported": c.supported,
               "value": round(c.mean) if c.supported else None,
               "unit": "ns" if c.is_clock else "count",
               "runs": len(c.values),
               "stddev_pct": round(c.stddev_pct, 3) if c.supported else None}
              for c in counters),
            {"type": "summary", "target": what, "runs": len(elapsed),
             "elapsed_s": round(sum(elapsed) / max(len(elapsed), 1), 9),
             "user_s": user_s, "sys_s": sys_s}]

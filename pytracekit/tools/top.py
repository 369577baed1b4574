"""top: who is on the CPU, from in-kernel sched_switch accounting.

Batch mode (-b, or when stdout is not a terminal) prints plain text or JSON
for scripts; otherwise a terminal UI like top (q quits, P/N/C/T sort, H
threads). `--functions` is a live profile like perf top (cpu-clock samples
aggregated by symbol). `-- COMMAND` watches a command and its children and
ends when it exits; --duration ends the run after that many seconds.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any, Callable

import click

from ..cli import options
from ..engine import settings
from ..collect.cputime import Accountant, Refresh, TaskTime, shown_rows
from ..errors import NotSupportedError
from ..engine import follow as follow_mod
from ..families.periodic import run_periodic
from ..render import top as render
from ..render.output import Output
from ..engine.runner import Target, announce
from ..textsafe import cstr
from ..engine.session import ProgramSession

DRY_RUN_ARGS = ["-b", "-n", "1"]

# A run that ends (duration, command exit, Ctrl-C) this soon after a refresh
# ended at that refresh: a last one would cover no time.
JUST_REFRESHED_S = 0.005


def _switch_every_cpu(ncpu: int) -> None:
    """`running` learns which task is on a CPU at its next sched_switch; a
    task that was running before attach and never switches (a spinner on an
    idle machine) would stay unseen. A short thread pinned to each CPU makes
    one switch there, so every CPU's current task is known from the start."""
    import threading

    def visit(cpu: int) -> None:
        try:
            os.sched_setaffinity(0, {cpu})   # 0: this thread
            time.sleep(0.001)
        except OSError:                      # an offline or forbidden CPU
            pass
    threads = [threading.Thread(target=visit, args=(cpu,), daemon=True) for cpu in range(ncpu)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


class CpuSession(ProgramSession):
    """top.bpf.c attached; `refresh()` returns the usage since the last call."""

    def __init__(self, *, pid: int = 0, follow: int = 0) -> None:
        """`pid`: show that process only (-p); `follow`: a command's pid, shown
        with the children it forks."""
        self.ncpu = os.cpu_count() or 1
        self.only, self.follow = pid, follow
        # only `-- COMMAND` is followed in BPF: -p is filtered in user space
        self.prog = follow_mod.load_with("top", follow_mod.mode_defines(follow, command=True),
                                         {"MAX_CPUS": max(self.ncpu, 1),
                                          "FOLLOW_KEEPS_FREED": 1})
        try:
            self.prog.ready()
        except BaseException:
            self.prog.close()
            raise
        self.accountant = Accountant(self.ncpu)
        self.before: dict[int, int] = {}   # tid -> on-CPU ns before tracing began
        if not (settings.current().dry_run or settings.current().ebpf):
            _switch_every_cpu(self.ncpu)
        self.refresh()   # the baseline: the first real refresh covers one interval

    def refresh(self) -> Refresh:
        times, running = self.prog["times"], self.prog["running"]
        now = time.monotonic_ns()     # the clock bpf_ktime_get_ns() reads
        in_progress: dict[int, int] = {}
        owners: dict[int, int] = {}
        for cpu in range(self.ncpu):
            run = running[running.Key(cpu)]
            if run.since and now > run.since:
                in_progress[run.tid] = in_progress.get(run.tid, 0) + now - run.since
                owners[run.tid] = run.tgid
        entries = []
        for k, v in times.items():
            entries.append(TaskTime(k.value, v.tgid, cstr(v.comm), v.ns, bool(v.exited)))
            if v.born:   # forked while tracing: none of its time is from before
                self.before.setdefault(k.value, 0)
            if v.exited:   # its time is in ns; `running` may name it after its death
                in_progress.pop(k.value, None)
        known = {e.tid for e in entries}
        for tid in in_progress:       # on a CPU since before attach: not in the map yet
            if tid not in known:
                entries.append(TaskTime(tid, owners[tid], _comm(tid), 0))
        entries = [dataclasses.replace(e, before_ns=self._before(e, in_progress.get(e.tid, 0)))
                   for e in entries]
        result, forget = self.accountant.refresh(entries, in_progress, now, alive=_alive)
        for tid in forget:
            self.before.pop(tid, None)
            try:
                del times[times.Key(tid)]
            except KeyError:
                pass
        return result

    read = refresh   # the session's read(): the usage since the last call

    def _before(self, e: TaskTime, running_ns: int) -> int:
        """At a thread's first sight, its CPU time before tracing began: the
        kernel's total for it (schedstat, ns) less what the probes saw."""
        if e.tid == 0:
            return 0
        if e.tid not in self.before:
            lifetime = _lifetime_cpu_ns(e.tgid, e.tid)
            seen = e.ns + running_ns
            self.before[e.tid] = max(0, lifetime - seen) if lifetime is not None else 0
        return self.before[e.tid]

    def pids(self) -> set[int] | None:
        """The processes to show; None: all of them."""
        if self.follow:
            return {k.value for k in self.prog["followed"].keys()}
        return {self.only} if self.only else None


def _comm(tid: int) -> str:
    try:
        with open(f"/proc/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _lifetime_cpu_ns(tgid: int, tid: int) -> int | None:
    """A thread's on-CPU ns so far (sum_exec_runtime); None once it is gone."""
    try:
        with open(f"/proc/{tgid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(tid: int) -> bool:
    return os.path.exists(f"/proc/{tid}")


def start(*, pid: int = 0, follow: int = 0, **_options: Any) -> CpuSession:
    return CpuSession(pid=pid, follow=follow)


def batch_printer(session: CpuSession, *, threads: bool, sort: str, limit: int | None,
                  out: Output) -> Callable[[], None]:
    def show() -> None:
        r = session.refresh()
        rows = shown_rows(r, threads, sort, session.pids())
        out.emit(text=lambda: render.screen(r, rows, threads, limit) + [""],
                 json=lambda: {"type": "refresh", "time": time.time(),
                               "interval_s": round(r.interval_ns / 1e9, 6),
                               "busy_pct": round(r.busy_pct, 2), "ncpu": r.ncpu,
                               "rows": [{"pid": u.pid, "tid": u.tid, "comm": u.comm,
                                         "cpu_pct": round(u.cpu_pct(r.interval_ns), 2),
                                         "cpu_ns": u.delta_ns, "total_ns": u.total_ns,
                                         "threads": u.threads, "exited": u.exited}
                                        for u in rows[:limit]]})
    return show


def run_refreshes(target: Target, *, delay: float, iterations: int | None,
                  duration: float | None, show: Callable[[], None],
                  poll: Callable[[int], None] | None = None) -> str:
    """show() every `delay` seconds; after -n refreshes the run ends there, while
    the end of --duration, the command's exit or Ctrl-C shows a last refresh
    with the time since the previous one. Returns why the run ended."""
    shown_at = [0.0]

    def report(final: bool) -> None:
        if final and time.monotonic() - shown_at[0] < JUST_REFRESHED_S:
            return
        show()
        shown_at[0] = time.monotonic()
    return run_periodic(target, duration=duration, interval=delay, count=iterations,
                        report=report, poll=poll)


def _can_draw() -> bool:
    """Whether TERM names a terminal curses can redraw in place: TERM=dumb (and
    an unknown or missing TERM) cannot move the cursor; top prints plain
    refreshes there, as with -b."""
    import curses
    try:
        curses.setupterm(os.environ.get("TERM"), sys.stdout.fileno())
    except curses.error:
        return False
    return bool(curses.tigetstr("cup")) and bool(curses.tigetstr("clear"))


@click.command("top", cls=options.CommandAfterDashes,
               context_settings=options.TOOL_CONTEXT)
@click.option("-b", "--batch", "batch_mode", is_flag=True, help="Plain text for scripts.")
@click.option("-n", "--iterations", type=click.IntRange(min=1), default=None,
              help="Stop after this many refreshes.")
@click.option("-d", "--delay", "--interval", "delay", type=options.Seconds(0.05),
              default=1.0, show_default=True, help="Seconds between refreshes.")
@options.duration_option()
@click.option("-s", "--sort", type=click.Choice(["cpu", "pid", "comm", "time"]), default="cpu",
              show_default=True, help="Sort column.")
@click.option("-H", "--threads", is_flag=True, help="One row per thread.")
@options.pid_option("-p")
@click.option("-m", "--max-rows", "limit", type=click.IntRange(min=1), default=None,
              help="Print at most this many rows per refresh.")
@click.option("--functions", is_flag=True, help="Live profile by function, like perf top.")
@click.option("-F", "--frequency", type=options.SampleFrequency(10000), default=499,
              show_default=True, help="Samples per second per CPU for --functions.")
@click.option("--idle", is_flag=True, help="--functions: include the idle task.")
@click.option("--python/--no-python", "python", default=True, show_default=True,
              help="--functions: charge CPython interpreter samples to the Python function.")
@options.output_options()
@options.standard
@click.pass_context
def command(ctx, batch_mode, iterations, delay, duration, sort, threads, pid, limit, functions,
            frequency, idle, python, out):
    """Who is on the CPU: per-process (or -H per-thread) CPU% from sched_switch.

    \b
    Examples:
      pytracekit top -b -n 3                  # three refreshes, plain text
      pytracekit top -b --duration 10 -d 2    # a refresh every 2 s for 10 s
      pytracekit top -b -- make -j2           # make and its children, until it exits
    """
    target = Target.from_options(pid, options.command_of(ctx))
    follow = target.pid if target.command else 0
    interactive = not batch_mode and out.redraws() and \
        not (settings.current().ebpf or settings.current().dry_run) and _can_draw()
    try:
        if functions:
            from ..families.topfunctions import FunctionProfile, printer
            session: Any = FunctionProfile(frequency=frequency, pid=target.pid, idle=idle,
                                           python=python)
            show = printer(session, interactive=interactive, frequency=frequency, limit=limit,
                           out=out)
            message = f"Sampling at {frequency} Hz per CPU"
        else:
            session = CpuSession(pid=0 if follow else target.pid, follow=follow)
            show = batch_printer(session, threads=threads, sort=sort, limit=limit, out=out)
            message = f"Refreshing every {delay:g} s"
        try:
            if interactive and not functions:
                import curses
                from ..families.topui import run_ui
                try:
                    run_ui(session, target, delay=delay, iterations=iterations,
                           duration=duration, threads=threads, sort=sort)
                except curses.error as exc:
                    raise NotSupportedError(
                        f"top's screen cannot run on this terminal (TERM="
                        f"{os.environ.get('TERM', '')}): {exc}; use -b for plain text") from None
            else:
                who = f" of command {target.command[0]}" if target.command else ""
                tail = f" for {duration:g} secs." if duration else "... Hit Ctrl-C to end."
                announce(f"{message}{who}{tail}")
                run_refreshes(target, delay=delay, iterations=iterations, duration=duration,
                              show=show, poll=getattr(session, "poll", None))
            out.loss(session.loss())
            note = session.summary_line() if functions else ""
            if note:
                print(note, file=sys.stderr)
        finally:
            session.close()
    finally:
        target.finish()

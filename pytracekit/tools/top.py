"""top: who is on the CPU, from in-kernel sched_switch accounting.

Batch mode (-b, or when stdout is not a terminal) prints plain text or JSON
for scripts; otherwise a terminal UI like top (q quits, P/N/C/T sort, H
threads). `--functions` is a live profile like perf top (cpu-clock samples
aggregated by symbol).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from .. import options, settings
from ..cputime import Accountant, Refresh, TaskTime, sorted_rows
from ..loader import Program
from ..model import LossReport
from ..render import top as render
from ..render.jsonl import dumps
from ..lossreport import print_loss
from ..runner import Target, announce, check_pid, run_until_done

DRY_RUN_ARGS = ["-b", "-n", "1"]


class Enough(KeyboardInterrupt):
    """Ends run_until_done after -n refreshes (it treats this like Ctrl-C)."""


class CpuSession:
    """top.bpf.c attached; `refresh()` returns the usage since the last call."""

    def __init__(self) -> None:
        self.ncpu = os.cpu_count() or 1
        self.prog = Program.from_file("top", defines={"MAX_CPUS": max(self.ncpu, 1)})
        self.prog.ready()
        self.accountant = Accountant(self.ncpu)
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
        entries = [TaskTime(k.value, v.tgid, v.comm.decode(errors="replace"), v.ns,
                            bool(v.exited)) for k, v in times.items()]
        known = {e.tid for e in entries}
        for tid in in_progress:       # on a CPU since before attach: not in the map yet
            if tid not in known:
                entries.append(TaskTime(tid, owners[tid], _comm(tid), 0))
        result, forget = self.accountant.refresh(entries, in_progress, now, alive=_alive)
        for tid in forget:
            try:
                del times[times.Key(tid)]
            except KeyError:
                pass
        return result

    def loss(self) -> LossReport:
        return self.prog.loss()

    def close(self) -> None:
        self.prog.close()


def _comm(tid: int) -> str:
    try:
        with open(f"/proc/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _alive(tid: int) -> bool:
    return os.path.exists(f"/proc/{tid}")


def start(**_options: Any) -> CpuSession:
    return CpuSession()


def _filter(rows: list, pid: int | None) -> list:
    return [r for r in rows if r.delta_ns and (not pid or r.pid == pid)]


def batch(session: CpuSession, *, delay: float, iterations: int | None, threads: bool,
          sort: str, pid: int | None, limit: int | None, as_json: bool) -> None:
    done = 0

    def tick() -> None:
        nonlocal done
        r = session.refresh()
        rows = sorted_rows(_filter(r.threads if threads else r.processes, pid), sort)
        if as_json:
            click.echo(dumps({"type": "refresh", "time": time.time(),
                              "interval_s": round(r.interval_ns / 1e9, 6),
                              "busy_pct": round(r.busy_pct, 2), "ncpu": r.ncpu,
                              "rows": [{"pid": u.pid, "tid": u.tid, "comm": u.comm,
                                        "cpu_pct": round(u.cpu_pct(r.interval_ns), 2),
                                        "cpu_ns": u.delta_ns, "total_ns": u.total_ns,
                                        "threads": u.threads, "exited": u.exited}
                                       for u in rows[:limit]]}))
        else:
            click.echo("\n".join(render.screen(r, rows, threads, limit)) + "\n")
        done += 1
        if iterations is not None and done >= iterations:
            raise Enough()

    run_until_done(Target(), interval=delay, on_interval=tick)


@click.command("top", context_settings=options.TOOL_CONTEXT)
@click.option("-b", "--batch", "batch_mode", is_flag=True, help="Plain text for scripts.")
@click.option("-n", "--iterations", type=click.IntRange(min=1), default=None,
              help="Stop after this many refreshes.")
@click.option("-d", "--delay", "--interval", "delay", type=click.FloatRange(min=0.05),
              default=1.0, show_default=True, help="Seconds between refreshes.")
@click.option("-s", "--sort", type=click.Choice(["cpu", "pid", "comm", "time"]), default="cpu",
              show_default=True, help="Sort column.")
@click.option("-H", "--threads", is_flag=True, help="One row per thread.")
@options.pid_option("-p")
@click.option("-m", "--max-rows", "limit", type=click.IntRange(min=1), default=None,
              help="Print at most this many rows per refresh.")
@click.option("--functions", is_flag=True, help="Live profile by function, like perf top.")
@click.option("-F", "--frequency", type=click.IntRange(min=1, max=10000), default=499,
              show_default=True, help="Samples per second per CPU for --functions.")
@click.option("--idle", is_flag=True, help="--functions: include the idle task.")
@options.json_option()
@options.standard
def command(batch_mode, iterations, delay, sort, threads, pid, limit, functions, frequency,
            idle, as_json):
    """Who is on the CPU: per-process (or -H per-thread) CPU% from sched_switch."""
    if pid:
        check_pid(pid)
    interactive = not (batch_mode or as_json) and sys.stdout.isatty() and \
        not (settings.current().ebpf or settings.current().dry_run)
    if functions:
        from ..topfunctions import run as run_functions
        run_functions(interactive=interactive, delay=delay, iterations=iterations, pid=pid,
                      frequency=frequency, idle=idle, limit=limit, as_json=as_json)
        return
    session = CpuSession()
    try:
        if interactive:
            from ..topui import run_ui
            run_ui(session, delay=delay, iterations=iterations, threads=threads, sort=sort,
                   pid=pid)
        else:
            announce(f"Refreshing every {delay:g} s... Hit Ctrl-C to end.")
            batch(session, delay=delay, iterations=iterations, threads=threads, sort=sort,
                  pid=pid, limit=limit, as_json=as_json)
        loss = session.loss()
        print_loss(loss, as_json)
    finally:
        session.close()

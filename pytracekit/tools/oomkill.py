"""oomkill: trace OOM kills (oom:mark_victim), one line each as BCC's oomkill
prints it: who triggered it, the victim, its memory, the load average.

BCC prints the pages of the OOM constraint (the memory cgroup's limit or the
machine's memory), which the tracepoint does not carry: the victim's
total-vm and anon-rss are shown instead."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("oomkill")   # struct event in bpf/oomkill.bpf.c


def start(*, pid: int = 0,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    return stream.EventStream(stream.load("oomkill", {"FILTER_PID": pid or 0}, buffer_pages),
                              FIELDS)


def loadavg() -> str:
    """/proc/loadavg without its last field, as BCC shows it."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:4])
    except OSError:
        return "?"


def formatters(t0: int):
    def lines(rows: list[tuple]) -> list[str]:
        now, load = time.strftime("%H:%M:%S"), loadavg()
        return [f'{now} Triggered by PID {pid} ("{stream.cstr(comm)}"), OOM kill of PID '
                f'{victim} ("{stream.cstr(victim_comm)}"), total-vm {total_vm} kB, '
                f"anon-rss {anon_rss} kB, loadavg: {load}"
                for (_ts, total_vm, anon_rss, _f, _s, _p, pid, _tid, victim, _uid, _adj, _pad,
                     comm, victim_comm) in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        load = loadavg()
        return [{"time_s": round((ts - t0) / 1e9, 9), "trigger_pid": pid, "trigger_tid": tid,
                 "trigger_comm": stream.cstr(comm), "pid": victim,
                 "comm": stream.cstr(victim_comm), "uid": uid, "total_vm_kb": total_vm,
                 "anon_rss_kb": anon_rss, "file_rss_kb": file_rss, "shmem_rss_kb": shmem_rss,
                 "pgtables_kb": pgtables, "oom_score_adj": adj, "loadavg": load}
                for (ts, total_vm, anon_rss, file_rss, shmem_rss, pgtables, pid, tid, victim,
                     uid, adj, _pad, comm, victim_comm) in rows]
    return lines, objects


@click.command("oomkill", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@options.pid_option("-p")
@options.duration_option("-d")
@event_tools.stream_options
def command(pid, duration, buffer_pages, out, command):
    """Trace OOM kills: who triggered each, the victim and its memory."""
    def printer() -> event_tools.Printer:
        lines, objects = formatters(time.monotonic_ns())
        return event_tools.Printer(out, None, lines, objects)

    event_tools.main(pid, command, lambda target_pid: start(pid=target_pid, buffer_pages=buffer_pages),
                printer, duration=duration, message="Tracing OOM kills... Hit Ctrl-C to end.")

"""The probe mechanism's own cost: empty BPF programs on the probe points a tool uses.

    python -m bench.floors kmem            # raw tracepoints kmem:kmalloc ... kmem_cache_free
                                           # (the slab report's: kmem's default)
    python -m bench.floors kmem-allocs     # only the allocations' (no kfree, kmem_cache_free)
    python -m bench.floors mutexstat PID   # uprobes pthread_mutex_lock, _unlock (where the
                                           # tool puts them: probes/emulated.py), cond waits;
                                           # tracepoints syscalls:sys_{enter,exit}_futex
    python -m bench.floors mutexstat-entry PID   # the same, lock and unlock at their entries
                                           # (before session 9: single-stepped instructions)
    python -m bench.floors mutexstat-uretprobe PID   # its probes before session 7:
                                           # pthread_mutex_lock (entry, return), _unlock

Attaches, writes to PYTRACEKIT_READY_FD (as a tool does), holds until SIGINT.
bench_sched_tools runs it beside the tool: a tool cannot cost less than this row.
"""
from __future__ import annotations

import os
import signal
import sys

from pytracekit.engine.loader import Program

EMPTY = '#include "vmlinux.h"\n#include "pytracekit.h"\n'
# the slab report's events (kmem's default; it traces mm_page_alloc only for --page)
KMEM_EVENTS = ("kmalloc", "kmem_cache_alloc", "kfree", "kmem_cache_free")
KMEM_FREES = ("kfree", "kmem_cache_free")


def kmem(frees: bool = True) -> Program:
    prog = Program.from_text("floor_kmem", EMPTY + "".join(
        f"RAW_TRACEPOINT_PROBE({event}) {{ return 0; }}\n" for event in KMEM_EVENTS
        if frees or event not in KMEM_FREES))
    prog.ready()
    return prog


def mutexstat(pid: int, uretprobe: bool = False, entries: bool = False) -> Program:
    from pytracekit.probes.emulated import attach_entry_uprobe
    from pytracekit.tools.mutexstat import COND_WAITS
    prog = Program.from_text("floor_mutexstat", EMPTY + (
        "int empty(struct pt_regs *ctx) { return 0; }\n" +
        ("" if uretprobe else
         "TRACEPOINT_PROBE(syscalls, sys_enter_futex) { return PTK_TP_PASS; }\n"
         "TRACEPOINT_PROBE(syscalls, sys_exit_futex) { return PTK_TP_PASS; }\n")))
    for symbol in ("pthread_mutex_lock", "pthread_mutex_unlock"):
        if uretprobe or entries:
            prog.attach_uprobe("c", "empty", symbol=symbol, pid=pid)
        else:
            attach_entry_uprobe(prog, "c", "empty", symbol, pid)
    if uretprobe:
        prog.attach_uprobe("c", "empty", symbol="pthread_mutex_lock", pid=pid, retprobe=True)
    for wait in ([] if uretprobe else COND_WAITS):
        prog.attach_uprobe("c", "empty", symbol=wait, pid=pid)
    prog.ready()
    return prog


def main(args: list[str]) -> None:
    prog = kmem(frees=args[0] == "kmem") if args[0].startswith("kmem") else \
        mutexstat(int(args[1]), uretprobe=args[0] == "mutexstat-uretprobe",
                  entries=args[0] == "mutexstat-entry")
    ready = os.environ.get("PYTRACEKIT_READY_FD")
    if ready:
        os.write(int(ready), b"1")
        os.close(int(ready))
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        prog.close()


if __name__ == "__main__":
    main(sys.argv[1:])

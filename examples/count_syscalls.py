#!/usr/bin/env python3
"""Compose a probe in Python: count system calls per process for a while.

Run as root from a checkout: .venv/bin/python examples/count_syscalls.py -d 2
"""
import click

from pytracekit.cli import options
from pytracekit.cli.command import main as run_cli
from pytracekit.engine.loader import Program
from pytracekit.model import Counts
from pytracekit.render.text import counts_table, loss_line
from pytracekit.engine.runner import Target, announce, run_until_done

PROGRAM = r"""
#include "vmlinux.h"
#include "pytracekit.h"

struct key_t { u32 pid; char comm[TASK_COMM_LEN]; };
BPF_HASH(calls, struct key_t, u64, 10240);

TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    struct key_t key = { .pid = bpf_get_current_pid_tgid() >> 32 };
    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    u64 zero = 0, *count = calls.lookup_or_try_init(&key, &zero);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        ptk_count_loss(PTK_MAP_FULL);
    return PTK_TP_PASS;   /* 0 would drop the event for perf and every other user */
}
"""


@click.command("count_syscalls")
@options.duration_option("-d")
@click.option("-n", "--top", default=10, show_default=True, help="Rows to print.")
@options.standard
def count_syscalls(duration, top):
    """System calls per process, counted in the kernel."""
    with Program.from_text("count_syscalls", PROGRAM) as prog:
        prog.ready()
        announce("Counting system calls... Hit Ctrl-C to end.")
        run_until_done(Target(), duration=duration)
        counts = Counts(("PID", "COMM"), value_name="SYSCALLS")
        for key, value in prog["calls"].items():
            counts.rows[(key.pid, key.comm.decode(errors="replace"))] = value.value
        click.echo(counts_table(counts, top))
        warning = loss_line(prog.loss())
        if warning:
            click.echo(warning, err=True)


if __name__ == "__main__":
    import sys
    from pytracekit.cli import command as cli
    cli.cli.add_command(count_syscalls)
    sys.exit(run_cli(["count_syscalls", *sys.argv[1:]], prog="count_syscalls"))

"""filetop: file reads and writes per thread and file, every interval (BCC's layout).

From the read/write system call tracepoints, the fd followed to its file and
summed in the kernel (no kprobes); see bpf/filetop.bpf.c.
"""
from __future__ import annotations

import os

import click

from ..cli import options
from ..families import summary, toptable
from ..engine.runner import Target
from ..collect.stream import cstr, program

DRY_RUN_ARGS: list[str] = []

SORTS = {"all": lambda r: (r.rbytes, r.wbytes, r.reads, r.writes),
         "reads": lambda r: r.reads, "writes": lambda r: r.writes,
         "rbytes": lambda r: r.rbytes, "wbytes": lambda r: r.wbytes}


class Row:
    __slots__ = ("pid", "tid", "comm", "type", "name", "dev", "ino", "reads", "writes",
                 "rbytes", "wbytes")

    def __init__(self, key, value) -> None:
        self.pid, self.tid, self.dev, self.ino = key.pid, key.tid, key.dev, key.ino
        self.comm = cstr(bytes(key.comm))
        # pipes and anonymous inodes have no dentry name: say which inode
        self.name = cstr(bytes(key.name)) or f"[inode:{key.ino}]"
        self.type = key.type.decode() if isinstance(key.type, bytes) else chr(key.type)
        self.reads, self.writes = value.reads, value.writes
        self.rbytes, self.wbytes = value.rbytes, value.wbytes


def start(*, pid: int = 0, all_files: bool = False, sort: str = "all") -> summary.Session:
    """read() -> Rows, the busiest first (by `sort`)."""
    prog = program("filetop", {"FILTER_PID": pid or 0, "ALL_FILES": all_files})
    return summary.Session(prog, lambda p: read(p, sort))


def read(prog, sort: str) -> list[Row]:
    rows = [Row(k, v) for k, v in prog["files"].items()]
    return sorted(rows, key=lambda r: (SORTS[sort](r), -r.tid), reverse=True)


HEADER = "%-7s %-16s %-6s %-6s %-7s %-7s %1s %s" % (
    "TID", "COMM", "READS", "WRITES", "R_Kb", "W_Kb", "T", "FILE")


def text(rows: list[Row], maxrows: int) -> str:
    lines = [HEADER] + ["%-7d %-16s %-6d %-6d %-7d %-7d %1s %s" % (
        r.tid, r.comm, r.reads, r.writes, r.rbytes // 1024, r.wbytes // 1024, r.type, r.name)
        for r in rows[:maxrows]]
    return "\n".join(lines) + "\n"


def objects(rows: list[Row], stamp: dict) -> list[dict]:
    return [{"type": "file", **stamp, "pid": r.pid, "tid": r.tid, "comm": r.comm,
             "file_type": r.type, "file": r.name, "dev": f"{os.major(r.dev)}:{os.minor(r.dev)}",
             "ino": r.ino, "reads": r.reads, "writes": r.writes, "rbytes": r.rbytes,
             "wbytes": r.wbytes} for r in rows]


@click.command("filetop", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@click.option("-a", "--all-files", is_flag=True,
              help="Include non-regular files (sockets, pipes, devices).")
@click.option("-r", "--maxrows", type=click.IntRange(1, 1_000_000), default=20,
              show_default=True, help="Rows to print (--json prints all).")
@click.option("-s", "--sort", type=click.Choice(sorted(SORTS)), default="all",
              show_default=True, help="Sort by this column (all: bytes, then calls).")
@options.pid_option("-p")
@toptable.options_tail
def command(all_files, maxrows, sort, pid, noclear, nosummary, interval, count, duration,
            out, words):
    """Summarize file reads and writes by thread and file, every interval."""
    interval, count, cmd = toptable.interval_count_command(words, interval, count)
    target = Target.from_options(pid, cmd)
    number = [0]

    def report(session: summary.Session) -> None:
        rows = session.read()
        number[0] += 1
        out.emit(text=lambda: (toptable.prefix(clear=not noclear, loadavg=not nosummary) +
                               text(rows, maxrows)).splitlines(),
                 json=lambda: objects(rows, toptable.stamp(number[0])))

    try:
        with start(pid=target.pid, all_files=all_files, sort=sort) as session:
            summary.run(session, target, lambda: report(session), interval=interval,
                        count=count, duration=duration, clear=("files",),
                        message=f"Tracing... Output every {interval:g} secs. Hit Ctrl-C to end")
            out.loss(session.loss())
    finally:
        target.finish()

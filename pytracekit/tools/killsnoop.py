"""killsnoop: trace kill(), tkill() and tgkill() system calls (raise, abort and
pthread_kill use tgkill) with their signal, target and result
(BCC's columns: TIME PID COMM SIG TPID RESULT)."""
from __future__ import annotations

import signal
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import UsageError

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("killsnoop")   # struct event in bpf/killsnoop.bpf.c


def signal_number(value: str | None) -> int:
    """-s 15, -s TERM, -s SIGTERM."""
    if not value:
        return 0
    if value.isdigit():
        return int(value)
    name = value.upper()
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise UsageError(f"unknown signal {value!r} (a number, or a name such as TERM, "
                         "SIGKILL, USR1)") from None


def pid_width() -> int:
    """BCC sizes the pid columns from pid_max."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return len(f.read().strip()) + 1
    except OSError:
        return 6


def start(*, pid: int = 0, tpid: int | None = None, sig: int = 0, failed: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "FILTER_TPID": tpid or 0, "FILTER_SIGNAL": sig,
               "FAILED_ONLY": failed}
    return stream.EventStream(stream.load("killsnoop", defines, buffer_pages), FIELDS)


def formatters(t0: int, width: int):
    comms = stream.CStrings(16)

    def lines(rows: list[tuple]) -> list[str]:
        now = time.strftime("%H:%M:%S")
        return [f"{now:<9} {pid:<{width}} {comms[comm]} {sig:<4} {tpid:<{width}} {ret}"
                for _ts, pid, tpid, sig, ret, comm in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "comm": stream.cstr(comm),
                 "sig": sig, "tpid": tpid, "ret": ret}
                for ts, pid, tpid, sig, ret, comm in rows]
    return lines, objects


@click.command("killsnoop", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@click.option("-x", "--failed", is_flag=True, help="Only show failed calls.")
@options.pid_option("-p")
@click.option("-T", "--tpid", type=int, default=None,
              help="Only signals sent to this pid (the thread id for tkill/tgkill).")
@click.option("-s", "--signal", "sig", default=None, help="Only this signal (number or name).")
@options.duration_option("-d")
@event_tools.stream_options
def command(failed, pid, tpid, sig, duration, buffer_pages, out, command):
    """Trace kill(), tkill() and tgkill() calls: TIME PID COMM SIG TPID RESULT."""
    number = signal_number(sig)

    def printer() -> event_tools.Printer:
        width = pid_width()
        lines, objects = formatters(time.monotonic_ns(), width)
        header = f"{'TIME':<9} {'PID':<{width}} {'COMM':<16} {'SIG':<4} {'TPID':<{width}} RESULT"
        return event_tools.Printer(out, header, lines, objects)

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, tpid=tpid, sig=number, failed=failed,
                                         buffer_pages=buffer_pages),
                printer, duration=duration, message="Tracing kill()s... Hit Ctrl-C to end.")

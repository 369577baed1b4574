"""exitsnoop: trace process exits with their age and exit code or signal
(BCC's columns: PCOMM PID PPID TID AGE(s) EXIT_CODE)."""
from __future__ import annotations

import signal
import time
from datetime import datetime, timezone

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("exitsnoop")   # struct event in bpf/exitsnoop.bpf.c


def start(*, pid: int = 0, per_thread: bool = False, failed: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "PER_THREAD": per_thread, "FAILED_ONLY": failed}
    return stream.EventStream(stream.load("exitsnoop", defines, buffer_pages), FIELDS)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name[3:]
    except ValueError:
        return "unknown"


def exit_text(exit_code: int) -> str:
    """BCC's EXIT_CODE column: 0, "code N" or "signal N (NAME)[, core dumped]"."""
    sig, status = exit_code & 0x7F, exit_code >> 8
    if exit_code & 0xFF == 0:
        return "0" if status == 0 else f"code {status}"
    text = f"signal {sig} ({signal_name(sig)})" if sig else ""
    return text + (", core dumped" if exit_code & 0x80 else "")


def header(timestamp: bool, utc: bool, label: str | None) -> str:
    parts = []
    if timestamp:
        parts.append(f"{'TIME-' + ('UTC' if utc else time.strftime('%Z')):<13}")
    if label is not None:
        parts.append(f"{'LABEL':<6}")
    return "".join(parts) + (f"{'PCOMM':<16} {'PID':<7} {'PPID':<7} {'TID':<7} {'AGE(s)':<7} "
                             "EXIT_CODE")


def formatters(timestamp: bool, utc: bool, label: str | None, t0: int):
    comms = stream.CStrings(16)

    def lines(rows: list[tuple]) -> list[str]:
        out = []
        for ts, start_time, pid, tid, ppid, exit_code, comm in rows:
            line = (f"{comms[comm]} {pid:<7} {ppid:<7} {tid:<7} "
                    f"{(ts - start_time) / 1e9:<7.2f} {exit_text(exit_code)}")
            if label is not None:
                line = f"{label:<6}" + line
            if timestamp:
                now = datetime.now(timezone.utc) if utc else datetime.now()
                line = f"{now.strftime('%H:%M:%S.%f')[:-3]:<13}" + line
            out.append(line)
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "ppid": ppid, "tid": tid,
                 "comm": stream.cstr(comm), "age_s": round((ts - start_time) / 1e9, 6),
                 "exit_code": exit_code >> 8, "signal": exit_code & 0x7F,
                 "core_dumped": bool(exit_code & 0x80)}
                for ts, start_time, pid, tid, ppid, exit_code, comm in rows]
    return lines, objects


@click.command("exitsnoop", context_settings={**options.TOOL_CONTEXT,
                                              "ignore_unknown_options": True})
@click.option("-t", "--timestamp", is_flag=True, help="Include a timestamp (local time).")
@click.option("--utc", is_flag=True, help="Include a timestamp in UTC.")
@options.pid_option("-p")
@click.option("--label", is_flag=False, flag_value="exit", default=None,
              help="Label each line (default label: exit).")
@click.option("-x", "--failed", is_flag=True, help="Only non-zero exits and signals.")
@click.option("--per-thread", is_flag=True, help="Trace every thread's exit.")
@options.duration_option("-d")
@event_tools.stream_options
def command(timestamp, utc, pid, label, failed, per_thread, duration, buffer_pages, out,
            command):
    """Trace process exits: PCOMM PID PPID TID AGE(s) EXIT_CODE."""
    timestamp = timestamp or utc

    def printer() -> event_tools.Printer:
        lines, objects = formatters(timestamp, utc, label, time.monotonic_ns())
        return event_tools.Printer(out, header(timestamp, utc, label), lines, objects)

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, per_thread=per_thread, failed=failed,
                                         buffer_pages=buffer_pages),
                printer, duration=duration,
                message="Tracing process exits... Hit Ctrl-C to end.")

"""sigsnoop: trace signals as they are generated (signal:signal_generate: who
sent which signal to whom, and what became of it), or with --deliver as they
are delivered (signal:signal_deliver: the receiving thread and its action).
libbpf-tools' columns: TIME PID COMM SIG TPID RESULT."""
from __future__ import annotations

import signal
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools
from ..errors import UsageError
from .killsnoop import pid_width, signal_number

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("sigsnoop")   # struct event in bpf/sigsnoop.bpf.c

# include/trace/events/signal.h: enum trace_signal_group
RESULTS = {0: "delivered", 1: "ignored", 2: "pending", 3: "overflow", 4: "lose_info"}
# include/uapi/asm-generic/siginfo.h: the si_codes every signal can have
CODES = {0: "SI_USER", 0x80: "SI_KERNEL", -1: "SI_QUEUE", -2: "SI_TIMER", -3: "SI_MESGQ",
         -4: "SI_ASYNCIO", -5: "SI_SIGIO", -6: "SI_TKILL"}
ACTIONS = {0: "default", 1: "ignore"}    # SIG_DFL, SIG_IGN; any other value is a handler


def start(*, pid: int = 0, tpid: int | None = None, sig: int = 0, failed: bool = False,
          deliver: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "FILTER_TPID": tpid or 0, "FILTER_SIGNAL": sig,
               "FAILED_ONLY": failed, "DELIVER": deliver}
    return stream.EventStream(stream.load("sigsnoop", defines, buffer_pages), FIELDS)


def signal_text(number: int, names: bool) -> str:
    if not names:
        return str(number)
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def result_text(result: int) -> str:
    return RESULTS.get(result, str(result))


def action_text(handler: int) -> str:
    return ACTIONS.get(handler, "handler")


def header(deliver: bool, width: int) -> str:
    if deliver:
        return (f"{'TIME':<9} {'PID':<{width}} {'TID':<{width}} {'COMM':<16} {'SIG':<9} "
                f"{'CODE':<10} ACTION")
    return f"{'TIME':<9} {'PID':<{width}} {'COMM':<16} {'SIG':<9} {'TPID':<{width}} RESULT"


def formatters(deliver: bool, names: bool, width: int, t0: int):
    comms = stream.CStrings(16)

    def lines(rows: list[tuple]) -> list[str]:
        now = time.strftime("%H:%M:%S")
        if deliver:
            return [f"{now:<9} {pid:<{width}} {tid:<{width}} {comms[comm]} "
                    f"{signal_text(sig, names):<9} {CODES.get(code, str(code)):<10} "
                    f"{action_text(handler)}"
                    for _ts, handler, pid, tid, _tpid, sig, code, _res, comm in rows]
        return [f"{now:<9} {pid:<{width}} {comms[comm]} {signal_text(sig, names):<9} "
                f"{tpid:<{width}} {result_text(result)}"
                for _ts, _h, pid, _tid, tpid, sig, _code, result, comm in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for ts, handler, pid, tid, tpid, sig, code, result, comm in rows:
            obj = {"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                   "comm": stream.cstr(comm), "sig": sig, "code": code}
            if deliver:
                obj.update(kind="deliver", action=action_text(handler))
            else:
                obj.update(kind="generate", tpid=tpid, result=result_text(result))
            out.append(obj)
        return out
    return lines, objects


@click.command("sigsnoop", context_settings={**options.TOOL_CONTEXT,
                                             "ignore_unknown_options": True})
@click.option("-x", "--failed", is_flag=True,
              help="Only signals not delivered (ignored, already pending, overflow).")
@options.pid_option("-p")
@click.option("-T", "--tpid", type=int, default=None,
              help="Only signals sent to this pid or thread.")
@click.option("-s", "--signal", "sig", default=None, help="Only this signal (number or name).")
@click.option("-n", "--name", "names", is_flag=True, help="Show signal names, not numbers.")
@click.option("-D", "--deliver", is_flag=True,
              help="Trace deliveries (the receiving thread runs the action) instead.")
@options.duration_option("-d")
@event_tools.stream_options
def command(failed, pid, tpid, sig, names, deliver, duration, buffer_pages, out, command):
    """Trace signals generated: TIME PID COMM SIG TPID RESULT (-D: delivered)."""
    number = signal_number(sig)
    if deliver and (failed or tpid is not None):
        raise UsageError("-x and -T filter generated signals; with --deliver use "
                               "-p (the receiving process) and -s")

    def printer() -> event_tools.Printer:
        width = pid_width()
        lines, objects = formatters(deliver, names, width, time.monotonic_ns())
        return event_tools.Printer(out, header(deliver, width), lines, objects)

    what = "deliveries" if deliver else "signals"
    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, tpid=tpid, sig=number, failed=failed,
                                         deliver=deliver, buffer_pages=buffer_pages),
                printer, duration=duration, message=f"Tracing {what}... Hit Ctrl-C to end.")

"""capable: trace capability checks (capability:cap_capable, Linux 6.14+) with
their verdict (BCC's columns TIME UID PID COMM CAP NAME, -x adds TID, plus
libbpf-tools' VERDICT). The tracepoint has no audit flag: every check is shown,
audited or not (BCC's -v), and there is no AUDIT column. -U takes user
stacks as trace -U does (ustacks.py); --unique shows each (capability,
process) once, as BCC's."""
from __future__ import annotations

import time

import click

from ..cli import options
from ..collect import stream, user_stacks as ustacks
from ..families import event_tools
from ..errors import NotFoundError, NotSupportedError, UsageError
from ..kernel import tracefs
from ..collect.stack_maps import without_bpf_frames
from ..symbolize.symbols import Symbolizer
from ..collect.user_stacks import EventUserStacks

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("capable")   # struct event in bpf/capable.bpf.c

# include/uapi/linux/capability.h, in order
CAPABILITIES = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
)
NO_TRACEPOINT = ("capable needs the capability:cap_capable tracepoint (Linux 6.14 and "
                 "later), which this kernel lacks; BCC's capable (a kprobe on cap_capable) "
                 "works where kprobes exist")


def cap_number(value: str | None) -> int:
    """-c 21, -c SYS_ADMIN, -c CAP_SYS_ADMIN; -1: any."""
    if not value:
        return -1
    if value.isdigit() and int(value) < len(CAPABILITIES):
        return int(value)
    name = value.upper()
    name = name if name.startswith("CAP_") else "CAP_" + name
    if name in CAPABILITIES:
        return CAPABILITIES.index(name)
    raise UsageError(f"unknown capability {value!r} (a number 0-{len(CAPABILITIES) - 1}, "
                     "or a name such as SYS_ADMIN or CAP_NET_RAW)")


def cap_name(number: int) -> str:
    return CAPABILITIES[number] if 0 <= number < len(CAPABILITIES) else f"CAP_{number}"


class CapableStream(stream.EventStream):
    """The event stream and, with -U, its user stacks (and their unwinder)."""

    def __init__(self, prog, user_stacks: EventUserStacks | None) -> None:
        super().__init__(prog, FIELDS)
        self.user_stacks = user_stacks

    def poll(self, handle, timeout_ms: int) -> int:
        if self.user_stacks is not None:
            self.user_stacks.poll()
        return super().poll(handle, timeout_ms)

    def user_stack(self, pid: int, stack_id: int, stack_hash: int) -> list[str]:
        assert self.user_stacks is not None
        return self.user_stacks.names(self.prog["user_stacks"], pid, stack_id, stack_hash)

    def loss(self):
        loss = super().loss()
        if self.user_stacks is not None:
            loss.unknown_frames += self.user_stacks.unknown_frames
        return loss

    def close(self) -> None:
        try:
            if self.user_stacks is not None:
                self.user_stacks.close()
        finally:
            super().close()


def start(*, pid: int = 0, cap: int = -1, denied: bool = False, kernel_stack: bool = False,
          user_stack: bool = False, unique: bool = False, unwind: str = "dwarf",
          command: tuple[str, ...] = (),
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> CapableStream:
    """`command`: the held command whose pid is `pid`."""
    try:
        tracefs.tracepoint("capability", "cap_capable")
    except NotFoundError:
        raise NotSupportedError(NO_TRACEPOINT) from None
    defines = {"FILTER_PID": pid or 0, "FILTER_CAP": cap, "DENIED_ONLY": denied,
               "KERNEL_STACK": kernel_stack, "USER_STACK": user_stack, "UNIQUE": unique,
               **ustacks.defines(unwind, user=user_stack, storage=4096,
                                 command_pid=pid if command else 0)}
    prog = stream.load("capable", defines, buffer_pages)
    user_stacks = None
    if user_stack:
        user_stacks = EventUserStacks()
        try:
            user_stacks.setup(prog, pid=pid or 0, command=command,
                              command_pid=pid if command else 0)
        except BaseException:
            prog.close()
            raise
    return CapableStream(prog, user_stacks)


def verdict(ret: int) -> str:
    return "allow" if ret == 0 else "deny"


def header(extra: bool) -> str:
    tid = f"{'TID':<7} " if extra else ""
    return (f"{'TIME':<9} {'UID':<6} {'PID':<7} {tid}{'COMM':<16} {'CAP':<4} {'NAME':<22} "
            "VERDICT")


def formatters(extra: bool, t0: int, stack=None, ustack=None):
    """`stack(stack_hash) -> [frame names]` when -K, else None; `ustack(pid,
    stack_id, stack_hash)` the same when -U. Kernel frames first, as BCC."""
    comms = stream.CStrings(16)

    def lines(rows: list[tuple]) -> list[str]:
        now = time.strftime("%H:%M:%S")
        out = []
        for _ts, pid, tid, uid, cap, ret, _kstack, comm, uhash, ustack_id, _pad, khash in rows:
            out.append(f"{now:<9} {uid:<6} {pid:<7} {f'{tid:<7} ' if extra else ''}"
                       f"{comms[comm]} {cap:<4} {cap_name(cap):<22} {verdict(ret)}")
            frames = (stack(khash) if stack is not None else []) + \
                (ustack(pid, ustack_id, uhash) if ustack is not None else [])
            if stack is not None or ustack is not None:
                out += [f"        {frame}" for frame in frames] + [""]
        return out

    def objects(rows: list[tuple]) -> list[dict]:
        out = []
        for ts, pid, tid, uid, cap, ret, _kstack, comm, uhash, ustack_id, _pad, khash in rows:
            obj = {"time_s": round((ts - t0) / 1e9, 9), "uid": uid, "pid": pid, "tid": tid,
                   "comm": stream.cstr(comm), "cap": cap, "name": cap_name(cap), "ret": ret,
                   "verdict": verdict(ret)}
            if stack is not None:
                obj["kernel_stack"] = stack(khash)
            if ustack is not None:
                obj["user_stack"] = ustack(pid, ustack_id, uhash)
            out.append(obj)
        return out
    return lines, objects


@click.command("capable", context_settings={**options.TOOL_CONTEXT,
                                            "ignore_unknown_options": True})
@click.option("-v", "all_checks", is_flag=True,
              help="Include non-audit checks (always: the tracepoint cannot tell them apart).")
@options.pid_option("-p")
@click.option("-x", "--extra", is_flag=True, help="Show the thread id (TID).")
@click.option("-c", "--cap", default=None,
              help="Only this capability (number or name, e.g. SYS_ADMIN).")
@click.option("--denied", is_flag=True, help="Only checks that were denied.")
@click.option("-K", "--kernel-stack", is_flag=True,
              help="Print the kernel stack of each check (under its line).")
@click.option("-U", "--user-stack", is_flag=True,
              help="Print the user stack of each check (under its line).")
@click.option("--unique", is_flag=True,
              help="Show each capability once per process (BCC's --unique).")
@ustacks.unwind_option()
@options.duration_option("-d")
@event_tools.stream_options
def command(all_checks, pid, extra, cap, denied, kernel_stack, user_stack, unique, unwind,
            duration, buffer_pages, out, command):
    """Trace capability checks: TIME UID PID COMM CAP NAME VERDICT."""
    number = cap_number(cap)
    opened: list[stream.EventStream] = []

    def open_stream(target_pid: int) -> stream.EventStream:
        events = start(pid=target_pid, cap=number, denied=denied, kernel_stack=kernel_stack,
                       user_stack=user_stack, unique=unique, unwind=unwind, command=command,
                       buffer_pages=buffer_pages)
        opened.append(events)
        return events

    def printer() -> event_tools.Printer:
        stack = None
        if kernel_stack:
            symbols = Symbolizer()
            symbols.kstacks = opened[0].prog["kstacks"]   # by hash (ptk_kstack.h)

            def stack(stack_hash: int) -> list[str]:
                frames = symbols.hashed_kernel_stack(stack_hash)
                return [f.name for f in without_bpf_frames(frames)]
        ustack = opened[0].user_stack if user_stack else None
        lines, objects = formatters(extra, time.monotonic_ns(), stack, ustack)
        return event_tools.Printer(out, header(extra), lines, objects)

    event_tools.main(pid, command, open_stream, printer, duration=duration,
                message="Tracing capability checks... Hit Ctrl-C to end.")

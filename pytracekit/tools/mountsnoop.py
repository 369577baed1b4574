"""mountsnoop: trace mount(), umount2(), fsopen(), fsmount() and move_mount()
with their arguments and result, in the caller's mount namespace (BCC's
columns: COMM PID TID MNT_NS CALL)."""
from __future__ import annotations

import errno
import time

import click

from ..cli import options
from ..collect import stream
from ..families import event_tools

DRY_RUN_ARGS: list[str] = []

FIELDS = stream.layout("mountsnoop")   # struct event in bpf/mountsnoop.bpf.c

CALLS = {1: "mount", 2: "umount", 3: "fsopen", 4: "fsmount", 5: "move_mount"}
# include/uapi/linux/mount.h
MS_FLAGS = ["MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC", "MS_SYNCHRONOUS", "MS_REMOUNT",
            "MS_MANDLOCK", "MS_DIRSYNC", "MS_NOSYMFOLLOW", None, "MS_NOATIME", "MS_NODIRATIME",
            "MS_BIND", "MS_MOVE", "MS_REC", "MS_SILENT", "MS_POSIXACL", "MS_UNBINDABLE",
            "MS_PRIVATE", "MS_SLAVE", "MS_SHARED", "MS_RELATIME", "MS_KERNMOUNT",
            "MS_I_VERSION", "MS_STRICTATIME", "MS_LAZYTIME"]
MS_MGC_VAL, MS_MGC_MSK = 0xC0ED0000, 0xFFFF0000
UMOUNT_FLAGS = ["MNT_FORCE", "MNT_DETACH", "MNT_EXPIRE", "UMOUNT_NOFOLLOW"]
FSOPEN_FLAGS = ["FSOPEN_CLOEXEC"]
FSMOUNT_FLAGS = ["FSMOUNT_CLOEXEC"]
MOUNT_ATTRS = {0x1: "MOUNT_ATTR_RDONLY", 0x2: "MOUNT_ATTR_NOSUID", 0x4: "MOUNT_ATTR_NODEV",
               0x8: "MOUNT_ATTR_NOEXEC", 0x10: "MOUNT_ATTR_NOATIME",
               0x20: "MOUNT_ATTR_STRICTATIME", 0x80: "MOUNT_ATTR_NODIRATIME",
               0x100000: "MOUNT_ATTR_IDMAP", 0x200000: "MOUNT_ATTR_NOSYMFOLLOW"}
MOVE_MOUNT_FLAGS = {0x1: "MOVE_MOUNT_F_SYMLINKS", 0x2: "MOVE_MOUNT_F_AUTOMOUNTS",
                    0x4: "MOVE_MOUNT_F_EMPTY_PATH", 0x10: "MOVE_MOUNT_T_SYMLINKS",
                    0x20: "MOVE_MOUNT_T_AUTOMOUNTS", 0x40: "MOVE_MOUNT_T_EMPTY_PATH",
                    0x100: "MOVE_MOUNT_SET_GROUP", 0x200: "MOVE_MOUNT_BENEATH"}
AT_FDCWD = -100


def flag_text(value: int, names) -> str:
    """`A|B|0x40` (0 when none); `names`: a list by bit number or a {bit: name} dict."""
    table = names if isinstance(names, dict) else \
        {1 << i: n for i, n in enumerate(names) if n}
    parts, rest = [], value
    for bit, name in table.items():
        if value & bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) or "0"


def mount_flags(value: int) -> str:
    parts = []
    if value & MS_MGC_MSK == MS_MGC_VAL:     # the old magic in the high half
        parts.append("MS_MGC_VAL")
        value &= ~MS_MGC_MSK
    text = flag_text(value, MS_FLAGS)
    return "|".join(parts + [text]) if parts and text != "0" else (parts[0] if parts else text)


def fd_text(value: int) -> str:
    fd = value & 0xFFFFFFFF
    fd = fd - (1 << 32) if fd & 0x80000000 else fd
    return "AT_FDCWD" if fd == AT_FDCWD else str(fd)


def result_text(ret: int) -> str:
    return f"-{errno.errorcode.get(-ret, str(-ret))}" if ret < 0 else str(ret)


def quoted(raw: bytes) -> str:
    text = stream.user_cstr(raw)
    if text is None:
        return "[unreadable]"
    return "NULL" if text == "(null)" and raw[:1] == b"\0" else f'"{text}"'


def arguments(call: int, a: tuple[int, ...], s: tuple[bytes, ...]) -> list[str]:
    if call == 1:
        return [quoted(s[0]), quoted(s[1]), quoted(s[2]), mount_flags(a[3]), quoted(s[3])]
    if call == 2:
        return [quoted(s[0]), flag_text(a[1], UMOUNT_FLAGS)]
    if call == 3:
        return [quoted(s[0]), flag_text(a[1], FSOPEN_FLAGS)]
    if call == 4:
        return [fd_text(a[0]), flag_text(a[1], FSMOUNT_FLAGS), flag_text(a[2], MOUNT_ATTRS)]
    return [fd_text(a[0]), quoted(s[0]), fd_text(a[2]), quoted(s[1]),
            flag_text(a[4], MOVE_MOUNT_FLAGS)]


def call_text(call: int, a: tuple[int, ...], s: tuple[bytes, ...], ret: int) -> str:
    name = CALLS.get(call, str(call))
    return f"{name}({', '.join(arguments(call, a, s))}) = {result_text(ret)}"


def start(*, pid: int = 0, failed: bool = False,
          buffer_pages: int = stream.DEFAULT_BUFFER_PAGES) -> stream.EventStream:
    defines = {"FILTER_PID": pid or 0, "FAILED_ONLY": failed}
    return stream.EventStream(stream.load("mountsnoop", defines, buffer_pages), FIELDS)


def header(timestamp: bool) -> str:
    return (f"{'TIME':<9} " if timestamp else "") + \
        f"{'COMM':<16} {'PID':<7} {'TID':<7} {'MNT_NS':<11} CALL"


def formatters(timestamp: bool, t0: int):
    comms = stream.CStrings(16)

    def lines(rows: list[tuple]) -> list[str]:
        now = f"{time.strftime('%H:%M:%S'):<9} " if timestamp else ""
        return [f"{now}{comms[comm]} {pid:<7} {tid:<7} {mnt_ns:<11} "
                f"{call_text(call, (a0, a1, a2, a3, a4), (s0, s1, s2, s3), ret)}"
                for (_ts, a0, a1, a2, a3, a4, ret, pid, tid, mnt_ns, call, comm,
                     s0, s1, s2, s3) in rows]

    def objects(rows: list[tuple]) -> list[dict]:
        return [{"time_s": round((ts - t0) / 1e9, 9), "pid": pid, "tid": tid,
                 "comm": stream.cstr(comm), "mnt_ns": mnt_ns, "call": CALLS.get(call, str(call)),
                 "args": arguments(call, (a0, a1, a2, a3, a4), (s0, s1, s2, s3)), "ret": ret}
                for (ts, a0, a1, a2, a3, a4, ret, pid, tid, mnt_ns, call, comm,
                     s0, s1, s2, s3) in rows]
    return lines, objects


@click.command("mountsnoop", context_settings={**options.TOOL_CONTEXT,
                                               "ignore_unknown_options": True})
@options.pid_option("-p")
@click.option("-t", "--timestamp", is_flag=True, help="Include a timestamp column.")
@click.option("-x", "--failed", is_flag=True, help="Only failed calls.")
@options.duration_option("-d")
@event_tools.stream_options
def command(pid, timestamp, failed, duration, buffer_pages, out, command):
    """Trace mount and umount calls: COMM PID TID MNT_NS CALL."""
    def printer() -> event_tools.Printer:
        lines, objects = formatters(timestamp, time.monotonic_ns())
        return event_tools.Printer(out, header(timestamp), lines, objects)

    event_tools.main(pid, command,
                lambda target_pid: start(pid=target_pid, failed=failed,
                                         buffer_pages=buffer_pages),
                printer, duration=duration,
                message="Tracing mount calls... Hit Ctrl-C to end.")

"""The few bpf(2) commands pytracekit issues itself, past BCC: proving that
fentry programs load (features), naming a program attached to an
interface (net), uprobe_multi links (one link, many uprobes, see
loader.Program.attach_uprobe_multi), what a process's fd attaches
(task_fd_query), which programs are loaded (prog_ids: BPF program symbols
may have changed), and a program's run statistics (prog_stats: the events the
kernel skipped it for, loader.Program.loss). `union bpf_attr` is laid out by hand:
only these fields (checked against the kernel's BTF, uapi/linux/bpf.h)."""
from __future__ import annotations

import ctypes
import os
import platform
import struct

SYSCALL_NUMBERS = {"x86_64": 321, "aarch64": 280, "s390x": 351, "ppc64le": 361, "riscv64": 280}
MAP_CREATE = 0
PROG_LOAD, PROG_GET_FD_BY_ID, OBJ_GET_INFO_BY_FD, TASK_FD_QUERY, LINK_CREATE = 5, 13, 15, 20, 28
PROG_GET_NEXT_ID = 11
BTF_LOAD = 18
# enum bpf_task_fd_type
FD_TYPES = ("raw_tracepoint", "tracepoint", "kprobe", "kretprobe", "uprobe", "uretprobe")
PROG_TYPE_KPROBE, PROG_TYPE_TRACING, TRACE_FENTRY = 2, 26, 24
TRACE_UPROBE_MULTI = 48            # enum bpf_attach_type
F_UPROBE_MULTI_RETURN = 1          # link_create.uprobe_multi.flags
_ATTR_SIZE = 128           # zero-filled beyond the fields set: the kernel accepts it
_PROG_INFO_SIZE = 256      # struct bpf_prog_info, up to and past `name`
_PROG_INFO_NAME = 64       # offset of name[16] in struct bpf_prog_info
_PROG_INFO_STATS = 192     # run_time_ns, run_cnt, recursion_misses (u64 each; Linux 5.12+)


def supported() -> bool:
    return platform.machine() in SYSCALL_NUMBERS


_LIBC: "ctypes.CDLL | None" = None


def bpf(cmd: int, attr: ctypes.Array) -> tuple[int, int]:
    """One bpf(2) call: (result, errno)."""
    global _LIBC
    if _LIBC is None:   # once: a program loaded from the cache makes ~40 calls
        _LIBC = ctypes.CDLL(None, use_errno=True)
    result = _LIBC.syscall(SYSCALL_NUMBERS[platform.machine()], cmd, attr, ctypes.sizeof(attr))
    return result, ctypes.get_errno()


def _load_empty(prog_type: int, expected_attach_type: int, attach_btf_id: int = 0
                ) -> tuple[int, int]:
    """BPF_PROG_LOAD of `r0 = 0; exit`: (fd, errno)."""
    insns = (ctypes.c_uint64 * 2)(0xb7, 0x95)      # mov64 r0, 0 ; exit
    license = ctypes.create_string_buffer(b"GPL")
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("IIQQ", attr, 0, prog_type, len(insns),
                     ctypes.addressof(insns), ctypes.addressof(license))
    struct.pack_into("I", attr, 68, expected_attach_type)
    struct.pack_into("I", attr, 108, attach_btf_id)
    return bpf(PROG_LOAD, attr)


def prog_load(prog_type: int, name: bytes, insns: bytes, license: bytes, kern_version: int,
              expected_attach_type: int = -1, func_info: tuple[int, bytes] | None = None
              ) -> tuple[int, int, str]:
    """BPF_PROG_LOAD of ready instructions (the program cache, bpf_loop
    callbacks): (fd, errno, verifier log, only on failure: the load is retried
    with a log then). `func_info`: (BTF fd, bpf_func_info records) for a
    program with subprograms (engine/bpfloop.py)."""
    c_insns = ctypes.create_string_buffer(insns, len(insns))
    c_license = ctypes.create_string_buffer(license)
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("IIQQ", attr, 0, prog_type, len(insns) // 8,
                     ctypes.addressof(c_insns), ctypes.addressof(c_license))
    struct.pack_into("I", attr, 40, kern_version)
    struct.pack_into("16s", attr, 48, name[:15])
    struct.pack_into("I", attr, 68, max(expected_attach_type, 0))
    if func_info is not None:   # prog_btf_fd, func_info_rec_size, func_info, func_info_cnt
        btf_fd, records = func_info
        c_records = ctypes.create_string_buffer(records, len(records))
        struct.pack_into("IIQI", attr, 72, btf_fd, 8, ctypes.addressof(c_records),
                         len(records) // 8)
    fd, err = bpf(PROG_LOAD, attr)
    if fd >= 0:
        return fd, 0, ""
    log = ctypes.create_string_buffer(1 << 20)
    struct.pack_into("IIQ", attr, 24, 1, ctypes.sizeof(log), ctypes.addressof(log))
    fd2, _err = bpf(PROG_LOAD, attr)
    if fd2 >= 0:
        os.close(fd2)
    return -1, err, log.value.decode(errors="replace")


def btf_load(blob: bytes) -> tuple[int, int]:
    """BPF_BTF_LOAD of a BTF blob: (fd, errno)."""
    c_blob = ctypes.create_string_buffer(blob, len(blob))
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("QQI", attr, 0, ctypes.addressof(c_blob), 0, len(blob))
    return bpf(BTF_LOAD, attr)


def map_create(map_type: int, key_size: int, value_size: int, max_entries: int, flags: int,
               name: str) -> tuple[int, int]:
    """BPF_MAP_CREATE without BTF (the program cache): (fd, errno)."""
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("IIIII", attr, 0, map_type, key_size, value_size, max_entries, flags)
    struct.pack_into("16s", attr, 28, name.encode()[:15])
    return bpf(MAP_CREATE, attr)


MAP_UPDATE_ELEM = 2
MAP_TYPE_ARRAY, MAP_TYPE_ARRAY_OF_MAPS = 2, 12


class GracePeriod:
    """Waits until every BPF program running when `wait()` was called has
    returned (an RCU grace period: the kernel calls synchronize_rcu after an
    update of a map-in-map, so that user space may then free what the old
    inner map held). Non-sleepable programs (perf_event, tracepoints,
    uprobes) run inside RCU read-side sections, so after wait() none still
    uses a value it read before: e.g. a module's old rows (unwinder.py)."""

    def __init__(self) -> None:
        self.inner, err = map_create(MAP_TYPE_ARRAY, 4, 4, 1, 0, "ptk_grace_in")
        if self.inner < 0:
            raise OSError(err, "BPF_MAP_CREATE (array)")
        attr = (ctypes.c_char * _ATTR_SIZE)()
        # map_type, key_size, value_size, max_entries, map_flags, inner_map_fd
        struct.pack_into("IIIIII", attr, 0, MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 1, 0, self.inner)
        struct.pack_into("16s", attr, 28, b"ptk_grace")
        self.outer, err = bpf(MAP_CREATE, attr)
        if self.outer < 0:
            os.close(self.inner)
            raise OSError(err, "BPF_MAP_CREATE (array of maps)")
        self.waits = 0

    def wait(self) -> None:
        key, value = ctypes.c_uint32(0), ctypes.c_uint32(self.inner)
        attr = (ctypes.c_char * _ATTR_SIZE)()
        struct.pack_into("IIQQQ", attr, 0, self.outer, 0, ctypes.addressof(key),
                         ctypes.addressof(value), 0)
        result, err = bpf(MAP_UPDATE_ELEM, attr)
        if result < 0:
            raise OSError(err, "BPF_MAP_UPDATE_ELEM (array of maps)")
        self.waits += 1

    def close(self) -> None:
        for fd in (self.outer, self.inner):
            if fd >= 0:
                os.close(fd)
        self.outer = self.inner = -1


def load_empty_fentry(attach_btf_id: int) -> tuple[int, int]:
    """An empty fentry program on BTF function `attach_btf_id`: (fd, errno)."""
    return _load_empty(PROG_TYPE_TRACING, TRACE_FENTRY, attach_btf_id)


def load_empty_uprobe_multi() -> tuple[int, int]:
    """An empty kprobe-type program for uprobe_multi links: (fd, errno)."""
    return _load_empty(PROG_TYPE_KPROBE, TRACE_UPROBE_MULTI)


def link_create_uprobe_multi(prog_fd: int, path: str, offsets: list[int], cookies: list[int],
                             pid: int = 0, retprobe: bool = False) -> tuple[int, int]:
    """BPF_LINK_CREATE of one uprobe_multi link: program `prog_fd` (loaded with
    expected_attach_type TRACE_UPROBE_MULTI) on every FILE offset of `path`,
    each with its cookie (bpf_get_attach_cookie); `pid` > 0 narrows it to that
    process. (fd, errno); closing the fd removes every uprobe at once."""
    if len(offsets) != len(cookies):
        raise ValueError("one cookie per offset")
    c_path = ctypes.create_string_buffer(os.fsencode(path))
    c_offsets = (ctypes.c_uint64 * len(offsets))(*offsets)
    c_cookies = (ctypes.c_uint64 * len(cookies))(*cookies)
    attr = (ctypes.c_char * _ATTR_SIZE)()
    # prog_fd, target_fd, attach_type, flags; then link_create.uprobe_multi at 16
    struct.pack_into("IIII", attr, 0, prog_fd, 0, TRACE_UPROBE_MULTI, 0)
    struct.pack_into("QQQQIII", attr, 16, ctypes.addressof(c_path), ctypes.addressof(c_offsets),
                     0, ctypes.addressof(c_cookies), len(offsets),
                     F_UPROBE_MULTI_RETURN if retprobe else 0, max(pid, 0))
    return bpf(LINK_CREATE, attr)


def prog_name(prog_id: int) -> str | None:
    """The name a loaded program was given (15 characters at most), or None."""
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("I", attr, 0, prog_id)
    fd, _err = bpf(PROG_GET_FD_BY_ID, attr)
    if fd < 0:
        return None
    try:
        info = _prog_info(fd)
        if info is None:
            return None
        return info[_PROG_INFO_NAME:_PROG_INFO_NAME + 16].split(b"\0", 1)[0].decode()
    finally:
        os.close(fd)


def prog_ids() -> tuple[int, ...]:
    """The ids of every BPF program loaded now, ascending (a syscall each: ids are
    never reused before they wrap, so a new program is a new id)."""
    ids = []
    attr = (ctypes.c_char * _ATTR_SIZE)()
    while True:
        struct.pack_into("I", attr, 0, ids[-1] if ids else 0)
        result, _err = bpf(PROG_GET_NEXT_ID, attr)
        if result < 0:       # ENOENT: no more (or not permitted: none seen)
            return tuple(ids)
        ids.append(struct.unpack_from("I", attr, 4)[0])


def prog_lengths(ids: tuple[int, ...] | None = None) -> dict[str, int]:
    """Each loaded program's tag (hex, as in its kallsyms name bpf_prog_TAG_NAME)
    -> the length of its JIT image in bytes; `ids`: prog_ids() if the caller has
    them already."""
    out = {}
    attr = (ctypes.c_char * _ATTR_SIZE)()
    for prog_id in prog_ids() if ids is None else ids:
        struct.pack_into("I", attr, 0, prog_id)
        fd, _err = bpf(PROG_GET_FD_BY_ID, attr)
        if fd < 0:
            continue
        try:
            info = _prog_info(fd)
        finally:
            os.close(fd)
        if info is not None:
            out[info[8:16].hex()] = struct.unpack_from("I", info, 16)[0]   # tag, jited_prog_len
    return out


def programs_held_by_processes() -> set[int]:
    """Ids of the BPF programs some process holds a file descriptor to (as
    /proc/PID/fdinfo says); a program only the kernel holds (attached to an
    interface by a process that died) is not among them."""
    held = set()
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    text = f.read()
            except OSError:
                continue
            at = text.find("prog_id:")
            if at >= 0:
                held.add(int(text[at + 8:].split(None, 1)[0]))
    return held


def task_fd_query(pid: int, fd: int) -> tuple[str, str, int] | None:
    """What fd `fd` of process `pid` attaches a BPF program to: (kind, name,
    program id), kind one of FD_TYPES; the name of a tracepoint is its event
    name without category (sys_enter_openat). None when the fd attaches none."""
    buf = ctypes.create_string_buffer(256)
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("IIIIQ", attr, 0, pid, fd, 0, len(buf), ctypes.addressof(buf))
    result, _err = bpf(TASK_FD_QUERY, attr)
    if result < 0:
        return None
    prog_id, fd_type = struct.unpack_from("II", attr, 24)
    kind = FD_TYPES[fd_type] if fd_type < len(FD_TYPES) else str(fd_type)
    return kind, buf.value.decode(errors="replace"), prog_id


def prog_type(fd: int) -> int:
    """The type of loaded program `fd` (bpf_prog_info.type), or -1."""
    info = _prog_info(fd)
    return struct.unpack_from("I", info, 0)[0] if info is not None else -1


def prog_stats(fd: int) -> tuple[int, int, int] | None:
    """(run_time_ns, run_cnt, recursion_misses) of loaded program `fd`, or None
    if the kernel gives no info. recursion_misses counts the times the kernel
    skipped the program because a BPF program already ran on that CPU; a
    kernel before 5.12 leaves it 0, as it leaves run_* 0 unless
    kernel.bpf_stats_enabled is set."""
    info = _prog_info(fd)
    return struct.unpack_from("QQQ", info, _PROG_INFO_STATS) if info is not None else None


def _prog_info(fd: int) -> bytes | None:
    """struct bpf_prog_info of loaded program `fd` (its first _PROG_INFO_SIZE
    bytes), or None if the kernel gives none."""
    info = (ctypes.c_char * _PROG_INFO_SIZE)()
    attr = (ctypes.c_char * _ATTR_SIZE)()
    struct.pack_into("IIQ", attr, 0, fd, ctypes.sizeof(info), ctypes.addressof(info))
    result, _err = bpf(OBJ_GET_INFO_BY_FD, attr)
    return info.raw if result >= 0 else None

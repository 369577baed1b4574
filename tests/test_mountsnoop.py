"""mountsnoop against a process that mounts and unmounts tmpfs in its own
private mount namespace (the host's mounts are never touched): every call
once, with its arguments, result and namespace, as perf counts them."""
import sys

import pytest

from conftest import pytracekit
from snoop_helpers import perf_stat, summary, validated_json

SCRIPT = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS, MS_REC, MS_PRIVATE = 0x20000, 16384, 1 << 18
d = sys.argv[1].encode()
assert libc.unshare(CLONE_NEWNS) == 0
os.write(1, ("mnt_ns=" + os.readlink("/proc/self/ns/mnt") + "\\n").encode())   # one write
assert libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
for _ in range(2):
    assert libc.mount(b"ptk", d, b"tmpfs", 0, b"size=1m") == 0
    assert libc.umount2(d, 0) == 0
assert libc.mount(b"ptk", d, b"nofs", 0, None) == -1
assert libc.umount2(d, 0) == -1
fs = libc.syscall(430, b"tmpfs", 1)                     # fsopen, FSOPEN_CLOEXEC
assert libc.syscall(431, fs, 6, None, None, 0) == 0     # fsconfig CREATE
m = libc.syscall(432, fs, 1, 1)                         # fsmount, read-only
assert libc.syscall(429, m, b"", -100, d, 4) == 0       # move_mount, F_EMPTY_PATH
assert libc.umount2(d, 2) == 0                          # MNT_DETACH
"""
CALLS = ["mount", "umount", "fsopen", "fsmount", "move_mount"]


def _expected(d: str, fs: int) -> list[str]:
    mount = f'mount("ptk", "{d}", "tmpfs", 0, "size=1m") = 0'
    umount = f'umount("{d}", 0) = 0'
    return ['mount(NULL, "/", NULL, MS_REC|MS_PRIVATE, NULL) = 0',
            mount, umount, mount, umount,
            f'mount("ptk", "{d}", "nofs", 0, NULL) = -ENODEV',
            f'umount("{d}", 0) = -EINVAL',
            f'fsopen("tmpfs", FSOPEN_CLOEXEC) = {fs}',
            f"fsmount({fs}, FSMOUNT_CLOEXEC, MOUNT_ATTR_RDONLY) = {fs + 1}",
            f'move_mount({fs + 1}, "", AT_FDCWD, "{d}", MOVE_MOUNT_F_EMPTY_PATH) = 0',
            f'umount("{d}", MNT_DETACH) = 0']


def _split(stdout: str) -> tuple[int, list[str]]:
    lines = stdout.splitlines()
    [ns] = [x for x in lines if x.startswith("mnt_ns=")]
    lines.remove(ns)
    return int(ns.split("[")[1].rstrip("]")), lines


@pytest.mark.root
def test_every_call_with_arguments_result_and_namespace(tmp_path):
    command = [sys.executable, "-c", SCRIPT, str(tmp_path)]
    res = pytracekit("mountsnoop", "--", *command)
    assert res.returncode == 0, res.stderr
    ns, lines = _split(res.stdout)
    assert lines[0].split() == ["COMM", "PID", "TID", "MNT_NS", "CALL"]
    rows = [line.split(None, 4) for line in lines[1:]]
    pid = rows[0][1]
    assert {(r[1], r[2], r[3]) for r in rows} == {(pid, pid, str(ns))}
    fs = int(rows[7][4].rsplit("= ", 1)[1])
    assert [r[4] for r in rows] == _expected(str(tmp_path), fs)
    assert summary(res.stderr) == {"captured": 11, "lost": 0, "unread": 0}
    perf = perf_stat([f"syscalls:sys_enter_{c}" for c in CALLS], command)
    assert [perf[f"syscalls:sys_enter_{c}"] for c in CALLS] == [4, 4, 1, 1, 1]


@pytest.mark.root
def test_failed_only_in_json(tmp_path):
    res = pytracekit("mountsnoop", "-x", "--json", "--", sys.executable, "-c", SCRIPT,
                     str(tmp_path))
    assert res.returncode == 0, res.stderr
    ns, lines = _split(res.stdout)
    objects = validated_json("mountsnoop", "\n".join(lines))
    events = [o for o in objects if o["type"] == "event"]
    d = f'"{tmp_path}"'
    assert [(e["call"], e["args"], e["ret"], e["mnt_ns"]) for e in events] == \
        [("mount", ['"ptk"', d, '"nofs"', "0", "NULL"], -19, ns), ("umount", [d, "0"], -22, ns)]

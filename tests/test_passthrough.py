"""Harm no one else (issue 11): while a tool runs, perf still sees every event
of the tracepoints the tool attached.

A BPF program on a tracepoint that returns 0 makes the kernel drop that event
for every perf user of the tracepoint, system-wide (perf_trace_run_bpf_submit
skips perf_tp_event). So each tool is started (conftest.Tool: probes attached),
the tracepoints it attached are read from the kernel (BPF_TASK_FD_QUERY on its
file descriptors, so a tool that attaches a new tracepoint is checked without
editing this file), and for each of them `perf stat` counts an action that
fires it:

- EXACT: a command whose events perf counts exactly (`perf stat -- COMMAND`, or
  system-wide with a filter only our action passes). The oracle is perf's own
  count of the same action without any tool (measured twice: it must be
  stable), also checked against the action's ground truth where one is known.
- FIRES: events no action fires an exact number of times (interrupts, slab
  allocations, lock contention): the action surely fires them, so perf must
  count at least its lower bound (a dropping program makes it 0).

Every tool whose tracepoints are attached is in TOOL_ARGS; every other tool is
in NOT_RUN with the reason; a new tool fails test_every_tool_is_classified
until it is put in one of them. A tracepoint a tool attaches that neither
table knows fails its tool's test, naming it.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import ROOT, Tool
from block_fixture import loop_disk  # noqa: F401 (fixture)
from netns_fixture import veth_pair  # noqa: F401 (fixture)
from perf_oracle import perf_running

TRACEFS = Path("/sys/kernel/tracing/events")
OPENS, EXECS, KILLS, FUTEXES, PAGES, BLOCKS = 40, 3, 3, 5, 64, 4
RETRANSMIT_PORT = 9711

# Tool -> arguments that keep it running, attached, until SIGINT. "{pid}" is a
# sleeping process of the test's own (for tools that need a target).
TOOL_ARGS: dict[str, list[str]] = {
    "argdist": ["-C", "t:syscalls:sys_enter_openat()"],
    "bindsnoop": [], "biolatency": [], "biopattern": [], "biosnoop": [], "biotop": ["--interval", "60"],
    "bitesize": [],
    "cpudist": [], "execsnoop": [], "exitsnoop": [],
    "fileslower": [], "filetop": ["--interval", "60"],
    "funccount": ["t:syscalls:sys_enter_openat"],
    "funcinterval": ["t:syscalls:sys_enter_openat"],
    "hardirqs": [], "killsnoop": [], "klockstat": [], "kmem": [],
    "memleak": [],                      # kernel allocations: the kmem tracepoints
    "mutexstat": ["-p", "{pid}"],       # sys_enter_futex next to its uprobes
    "offcputime": [], "offwaketime": [], "wakeuptime": [],
    "opensnoop": [], "solisten": [], "statsnoop": [],
    "sigsnoop": [], "threadsnoop": [], "capable": [], "oomkill": [], "mountsnoop": [],
    "pidpersec": [], "drsnoop": [], "compactsnoop": [], "runqslower": [],
    "slabratetop": [], "vfsstat": [], "biostacks": [], "cachestat": [],
    "deadlock": ["{pid}"],                # sched_process_fork next to its uprobes
    "runqlat": [], "runqlen": [], "schedlat": [], "softirqs": [],
    "stackcount": ["t:syscalls:sys_enter_openat"],
    # -e: stackcount's generated code with the sample log (on-CPU: perf_event, its own)
    "record": ["-o", "/tmp/pytracekit-passthrough.ptk", "-e", "t:syscalls:sys_enter_openat"],
    # a filter the kernel cannot apply, so stat's BPF program (+ ptk_follow.h) is attached
    "stat": ["-e", "syscalls:sys_enter_openat", "--filter", 'filename == "/nonexistent"',
             "--", "sleep", "120"],
    "syscount": ["-L"],
    "systrace": ["-a"],
    "timehist": [], "timechart": ["-o", "/dev/null"],
    "tcpaccept": [], "tcpconnect": [], "tcpconnlat": [], "tcpdrop": [], "tcplife": [],
    "tcpretrans": [], "tcprtt": [], "tcpstates": [], "tcptop": [],
    "top": ["-b", "-d", "5"],
    "trace": ["t:syscalls:sys_enter_openat"],
}
NOT_RUN = {
    "cprofile": "USDT probes in Python processes (uprobes: our own perf events)",
    "diff": "reads recorded files", "report": "reads recorded files",
    "script": "reads recorded files",
    "export": "serves other tools' start(), tested here through those tools",
    "doctor": "attaches for a moment, by itself: test_doctor_leaves_getppid_to_perf",
    "list": "attaches only under --dry-run, for a moment (bpf/list.bpf.c passes events)",
    "faults": "a perf_event (page-faults) program: its own event",
    "profile": "a perf_event (cpu-clock) program: its own event",
    "annotate": "profile's perf_event (cpu-clock) program: its own event",
    "cpuunclaimed": "a perf_event (cpu-clock) program: its own event",
    "funclatency": "uprobes/kprobes only (refuses t: specs)",
    "funcslower": "uprobes/kprobes only (refuses t: specs)",
    "gethostlatency": "libc uprobes only (its own perf events)",
    "pktcount": "tc and XDP programs, not tracepoints",
    "ugc": "USDT probes in a Python process (uprobes: our own perf events)",
    "uthreads": "a uprobe (its own event) and a raw tracepoint (return value ignored)",
    "bashreadline": "a uretprobe on bash's readline (its own event)",
    "sslsniff": "uprobes and uretprobes on libssl (its own events)",
}


# -- actions: commands that fire tracepoints ---------------------------------

def actions(workload: str, marker: str, disk) -> dict[str, dict]:
    """name -> {argv, system_wide (perf -a), filter (perf --filter for every event)}."""
    py = [sys.executable, "-c"]
    futex = ("import ctypes; libc = ctypes.CDLL(None); word = ctypes.c_int(0)\n"
             f"for _ in range({FUTEXES}): libc.syscall(202, ctypes.byref(word), 1, 1, 0, 0, 0)")
    tcp = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
           "c = socket.create_connection(s.getsockname()); a, _ = s.accept()\n"
           "c.sendall(b'x'); a.recv(1)\n"                 # one send, one receive
           "a.close(); c.close(); s.close()")
    tkill = ("import ctypes, signal, threading; libc = ctypes.CDLL(None)\n"
             f"for _ in range({KILLS}):\n"
             "    signal.pthread_kill(threading.get_ident(), 0)\n"            # tgkill
             "    libc.syscall(200, threading.get_native_id(), 0)")          # tkill
    listen = "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); s.close()"
    # a SYN to a port nothing listens on: dropped (NO_SOCKET), answered with a RST
    refused = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
               "port = s.getsockname()[1]; s.close(); c = socket.socket(); "
               "assert c.connect_ex(('127.0.0.1', port)) == 111")
    # one of each read/write system call on the marker file
    fileio = (f"import os; fd = os.open({marker!r}, os.O_RDWR | os.O_CREAT)\n"
              "os.write(fd, b'x'); os.pwrite(fd, b'x', 0); os.writev(fd, [b'x'])\n"
              "os.read(fd, 1); os.pread(fd, 1, 0); os.readv(fd, [bytearray(1)])\n"
              # glibc's preadv()/pwritev() are the *v2 system calls: those, then the
              # v1 calls themselves (nr 295/296) on a one-element iovec
              "os.preadv(fd, [bytearray(1)], 0, os.RWF_HIPRI); os.pwritev(fd, [b'x'], 0, "
              "os.RWF_SYNC)\nimport ctypes; libc = ctypes.CDLL(None); b = ctypes.c_char(b'x')\n"
              "iov = (ctypes.c_void_p * 2)(ctypes.addressof(b), 1)\n"
              "libc.syscall(295, fd, iov, 1, 0, 0); libc.syscall(296, fd, iov, 1, 0, 0)")
    out = {
        "open": {"argv": [workload, "open", marker, str(OPENS)]},
        "fileio": {"argv": py + [fileio]},
        "vfsio": {"argv": [workload, "fileio", marker, str(OPENS)]},  # OPENS of each call
        # PAGES written and synced, dropped from the page cache, read back
        "pagecache": {"argv": py + [PAGECACHE, f"{marker}.cache"]},
        "exec": {"argv": [workload, "exec", str(EXECS)]},
        "kill": {"argv": ["sh", "-c", "; ".join(["kill -0 $$"] * KILLS)]},
        "stat": {"argv": ["sh", "-c", f"stat {marker} >/dev/null; stat -f {marker} >/dev/null"]},
        "futex": {"argv": py + [futex]},
        "tkill": {"argv": py + [tkill]},
        "signals": {"argv": [workload, "signals", str(KILLS)]},   # 4 handled per round
        "tcp": {"argv": py + [tcp]},
        "compact": {"argv": ["sh", "-c", "echo 1 > /proc/sys/vm/compact_memory"]},
        # capability checks: the interpreter makes many; only chroot's are counted
        "chroot": {"argv": py + [f"import os\nfor _ in range({KILLS}): os.chroot('/')"],
                   "filter": "cap == 18"},
        "listen": {"argv": py + [listen]},      # two state changes, both in the process
        "touch": {"argv": [workload, "touch", str(PAGES)]},
        "contend": {"argv": [workload, "kcontend", "500"]},
        # system-wide: interrupts and RCU-time frees happen outside the command
        "tcp-all": {"argv": py + [tcp], "system_wide": True},
        "refused-all": {"argv": py + [refused], "system_wide": True},
        "exec-all": {"argv": ["sh", "-c", f"{workload} exec {EXECS}; sleep 0.2"],
                     "system_wide": True},
        "open-all": {"argv": [workload, "open", marker, str(OPENS)], "system_wide": True},
        # synchronous writes to the root disk: its device interrupts
        "disk-irq": {"argv": ["dd", "if=/dev/zero", f"of={marker}.irq",
                              "oflag=direct", "conv=fsync", "bs=4096", "count=8", "status=none"],
                     "system_wide": True},
    }
    out["oom"] = {"during": lambda: oom_kill(workload), "system_wide": True}
    out["mount"] = {"argv": py + [MOUNTS, f"{marker}.mnt"]}
    out["reclaim"] = {"during": lambda: memcg_reclaim(f"{marker}.dd"), "system_wide": True}
    if disk is not None:
        st = os.stat(disk.path)
        dev = (os.major(st.st_rdev) << 20) | os.minor(st.st_rdev)
        out["block"] = {"argv": [disk.dd, "if=/dev/zero", f"of={disk.path}", "oflag=direct",
                                 "bs=65536", f"count={BLOCKS}", "status=none"],
                        "system_wide": True, "filter": f"dev == {dev}"}
    return out


PAGECACHE = f"""
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
for _ in range({PAGES}):
    os.write(fd, b"x" * 4096)
os.fsync(fd)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
os.lseek(fd, 0, 0)
while os.read(fd, 1 << 16):
    pass
"""


# KILLS tmpfs mounts and unmounts, then one through the new mount API, in a
# private mount namespace of its own (the host's mounts are never touched)
MOUNTS = f"""
import ctypes, os, sys
libc = ctypes.CDLL(None)
d = sys.argv[1].encode()
os.makedirs(d, exist_ok=True)
assert libc.unshare(0x20000) == 0 and libc.mount(None, b"/", None, 16384 | 1 << 18, None) == 0
for _ in range({KILLS}):
    assert libc.mount(b"ptk", d, b"tmpfs", 0, None) == 0 and libc.umount2(d, 0) == 0
fs = libc.syscall(430, b"tmpfs", 1)
assert libc.syscall(431, fs, 6, None, None, 0) == 0
assert libc.syscall(429, libc.syscall(432, fs, 1, 0), b"", -100, d, 4) == 0
assert libc.umount2(d, 2) == 0
"""


def oom_kill(workload: str) -> None:
    """One process killed by its memory cgroup's OOM killer (never the host's)."""
    from memcg_helpers import memory_cgroup
    with memory_cgroup(32 << 20, "ptk-passthrough") as inside:
        hog = subprocess.run(inside + [workload, "touch", str(32768), "0"], timeout=60)
    assert hog.returncode == -signal.SIGKILL


def memcg_reclaim(path: str) -> None:
    """dd writing 32 MiB in a memory cgroup limited to 8 MiB: it reclaims."""
    from memcg_helpers import memory_cgroup
    with memory_cgroup(8 << 20, "ptk-passthrough") as inside:
        subprocess.run(inside + ["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=32",
                                 "status=none"], check=True, timeout=60)
    os.unlink(path)


# tracepoint -> (action, ground truth): the truth is exact where the action
# alone fires the event, a lower bound (-n) where the command's start-up
# (loader, shell, interpreter) fires it too. Perf's count without a tool is
# checked against it, and is what perf must count with the tool.
EXACT: dict[str, tuple[str, int]] = {
    "syscalls:sys_enter_openat": ("open", -OPENS), "syscalls:sys_exit_openat": ("open", -OPENS),
    "raw_syscalls:sys_enter": ("open", -OPENS), "raw_syscalls:sys_exit": ("open", -OPENS),
    "syscalls:sys_enter_execve": ("exec", -EXECS), "syscalls:sys_exit_execve": ("exec", -EXECS),
    "sched:sched_process_exec": ("exec", -EXECS), "sched:sched_process_fork": ("exec", EXECS),
    "sched:sched_process_exit": ("exec", -EXECS),
    "syscalls:sys_enter_kill": ("kill", KILLS), "syscalls:sys_exit_kill": ("kill", KILLS),
    "syscalls:sys_enter_tkill": ("tkill", KILLS), "syscalls:sys_exit_tkill": ("tkill", KILLS),
    "syscalls:sys_enter_tgkill": ("tkill", KILLS), "syscalls:sys_exit_tgkill": ("tkill", KILLS),
    "syscalls:sys_enter_rt_sigreturn": ("signals", 4 * KILLS),
    "signal:signal_generate": ("signals", 4 * KILLS),   # its exit's SIGCHLD: after perf's
    "task:task_newtask": ("signals", 1),                 # its one worker thread
    "capability:cap_capable": ("chroot", KILLS),         # CAP_SYS_CHROOT, once per chroot
    **{f"syscalls:sys_{d}_{call}": ("mount", n) for d in ("enter", "exit")
       for call, n in (("mount", KILLS + 1), ("umount", KILLS + 1), ("fsopen", 1),
                       ("fsmount", 1), ("move_mount", 1))},
    **{f"syscalls:sys_enter_{call}": ("vfsio", n) for call, n in (
        ("read", -OPENS), ("pread64", -OPENS), ("readv", OPENS), ("write", OPENS),
        ("pwrite64", OPENS), ("writev", OPENS), ("fsync", OPENS), ("fdatasync", OPENS))},
    # lower bounds: the first run creates the file (metadata folios dirtied too)
    "filemap:mm_filemap_add_to_page_cache": ("pagecache", -PAGES),
    "writeback:writeback_dirty_folio": ("pagecache", -PAGES),
    "syscalls:sys_enter_statx": ("stat", -1), "syscalls:sys_exit_statx": ("stat", -1),
    "syscalls:sys_enter_statfs": ("stat", -1), "syscalls:sys_exit_statfs": ("stat", -1),
    "syscalls:sys_enter_futex": ("futex", -FUTEXES),
    "syscalls:sys_exit_futex": ("futex", -FUTEXES),
    "syscalls:sys_exit_connect": ("tcp", -1), "syscalls:sys_exit_accept4": ("tcp", -1),
    "sock:inet_sock_set_state": ("listen", 2),
    # (sys_enter_ of these: exact, from the vfsio action above)
    "syscalls:sys_exit_read": ("fileio", -1),
    "syscalls:sys_exit_write": ("fileio", -1),
    "syscalls:sys_exit_pread64": ("fileio", -1),
    "syscalls:sys_exit_pwrite64": ("fileio", -1),
    "syscalls:sys_exit_readv": ("fileio", -1),
    "syscalls:sys_exit_writev": ("fileio", -1),
    **{f"syscalls:sys_exit_{call}": ("fileio", -1)
       for call in ("preadv", "preadv2", "pwritev", "pwritev2")},
    "sock:sock_send_length": ("tcp", 1), "sock:sock_recv_length": ("tcp", 1),
    "syscalls:sys_enter_listen": ("listen", 1), "syscalls:sys_exit_listen": ("listen", 1),
    "syscalls:sys_enter_bind": ("listen", 1), "syscalls:sys_exit_bind": ("listen", 1),
    "block:block_rq_issue": ("block", BLOCKS), "block:block_rq_complete": ("block", BLOCKS),
    "block:block_io_start": ("block", BLOCKS),
    "tcp:tcp_retransmit_skb": ("retransmit", 1),
}
# tracepoint -> (action, lower bound perf must reach)
FIRES: dict[str, tuple[str, int]] = {
    "skb:kfree_skb": ("refused-all", 1), "tcp:tcp_probe": ("tcp-all", 1),
    "irq:softirq_entry": ("tcp-all", 1), "irq:softirq_exit": ("tcp-all", 1),
    "irq:irq_handler_entry": ("disk-irq", 1), "irq:irq_handler_exit": ("disk-irq", 1),
    "lock:contention_begin": ("contend", 1), "lock:contention_end": ("contend", 1),
    "kmem:kmalloc": ("open-all", 1), "kmem:kfree": ("open-all", 1),
    "kmem:kmem_cache_alloc": ("open-all", OPENS), "kmem:kmem_cache_free": ("open-all", 1),
    "kmem:mm_page_alloc": ("touch", PAGES), "kmem:mm_page_free": ("touch", 1),
    "sched:sched_process_free": ("exec-all", 1),
    "oom:mark_victim": ("oom", 1),   # system-wide: other kills may come too
    "vmscan:mm_vmscan_memcg_reclaim_begin": ("reclaim", 1),
    "vmscan:mm_vmscan_memcg_reclaim_end": ("reclaim", 1),
    # once per populated zone (a FIRES bound: 2 s each, not worth the oracle's two runs)
    "compaction:mm_compaction_begin": ("compact", 1),
    "compaction:mm_compaction_end": ("compact", 1),
}
# Attached by a tool but fired by none of the actions above on purpose.
UNFIRED = {
    # syscalls a current system never makes for stat(1), accept(2) is accept4 here
    "syscalls:sys_enter_newstat", "syscalls:sys_exit_newstat",
    "syscalls:sys_enter_newlstat", "syscalls:sys_exit_newlstat",
    "syscalls:sys_enter_newfstatat", "syscalls:sys_exit_newfstatat",
    "syscalls:sys_exit_accept", "syscalls:sys_enter_open", "syscalls:sys_exit_open",
    "syscalls:sys_enter_openat2", "syscalls:sys_exit_openat2",
    "syscalls:sys_enter_execveat", "syscalls:sys_exit_execveat",
    # vfsstat's rarer calls (the vfsio action makes the common ones)
    "syscalls:sys_enter_preadv", "syscalls:sys_enter_preadv2", "syscalls:sys_enter_pwritev",
    "syscalls:sys_enter_pwritev2", "syscalls:sys_enter_creat",
    "syscalls:sys_enter_open_by_handle_at",
    # a loop device's requests go straight to its driver, never inserted
    "block:block_rq_insert",
    # global memory pressure: never made on a machine others share (drsnoop's
    # memcg reclaim tracepoints, same code, are fired)
    "vmscan:mm_vmscan_direct_reclaim_begin", "vmscan:mm_vmscan_direct_reclaim_end",
    # asked before a compaction for an allocation's order; compact_memory has none
    "compaction:mm_compaction_suitable",
}


# -- reading what a process attached -------------------------------------------

def tracepoint_categories() -> dict[str, list[str]]:
    """event name -> its categories (the kernel reports an event name alone)."""
    out: dict[str, list[str]] = {}
    for category in os.listdir(TRACEFS):
        if (TRACEFS / category).is_dir():
            for event in os.listdir(TRACEFS / category):
                out.setdefault(event, []).append(category)
    return out


def attached_tracepoints(pid: int) -> set[str]:
    """category:event of every tracepoint process `pid` has a BPF program on."""
    from pytracekit.kernel.bpfsys import task_fd_query
    categories = tracepoint_categories()
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        what = task_fd_query(pid, int(fd))
        if what and what[0] == "tracepoint":
            found.update(f"{c}:{what[1]}" for c in categories.get(what[1], ["?"]))
    return found


def other_tracers(tracepoints: set[str], tool_pid: int) -> str:
    """Other processes with BPF programs on these tracepoints: an older
    pytracekit there makes perf count 0 whatever our tool does."""
    names = {tp.split(":")[1] for tp in tracepoints}
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) in (tool_pid, os.getpid()):
            continue
        try:
            attached = names & {tp.split(":")[1] for tp in attached_tracepoints(int(pid))}
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if attached:
            found.append(f"pid {pid} ({cmdline.decode(errors='replace')[:80]}) on "
                         f"{', '.join(sorted(attached))}")
    return "; other tracers: " + "; ".join(found) if found else ""


def children(pid: int) -> list[int]:
    return [int(c) for task in os.listdir(f"/proc/{pid}/task")
            for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]


# -- perf ----------------------------------------------------------------------

def perf_count(events: list[str], action: dict, tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "perf.csv"
    cmd = ["perf", "stat", "-x,", "-o", str(out)]
    for ev in events:
        cmd += ["-e", ev] + (["--filter", action["filter"]] if action.get("filter") else [])
    if action.get("system_wide"):
        cmd.append("-a")
    if "during" in action:   # counting from "go" until the callable returns
        with perf_running(cmd + ["--", "sh", "-c", "echo go; read done"], text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as proc:
            assert proc.stdout.readline() == "go\n"
            action["during"]()
            proc.communicate("done\n", timeout=60)
        assert proc.returncode == 0, cmd
    else:
        res = subprocess.run(cmd + ["--", *action["argv"]], capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, (cmd, action["argv"], res.stderr)
    counts = {}
    for line in out.read_text().splitlines():
        fields = line.split(",")
        if len(fields) > 2 and fields[2] in events:
            assert fields[0].isdigit(), line
            counts[fields[2]] = int(fields[0])
    assert set(counts) == set(events), out.read_text()
    return counts


class Oracle:
    """Perf's counts of each action without any tool: measured before the
    first tool starts, twice (they must agree)."""

    def __init__(self, acts: dict[str, dict], tmp_path: Path) -> None:
        self.acts, self.tmp_path, self.counts = acts, tmp_path, {}
        for name in {a for a, _ in EXACT.values()} & set(acts):
            events = sorted(tp for tp, (a, _) in EXACT.items() if a == name)
            runs = [perf_count(events, acts[name], tmp_path) for _ in range(2)]
            while runs[-1] != runs[-2] and len(runs) < 5:   # another tracer came and went
                runs.append(perf_count(events, acts[name], tmp_path))
            assert runs[-1] == runs[-2], \
                f"action {name} is not repeatable: {runs}{other_tracers(set(events), 0)}"
            self.counts[name] = runs[-1]

    def add_retransmit(self, request) -> None:
        """A TCP connection between two namespaces whose first data segment
        is dropped once: exactly one retransmit (tests/test_tcpretrans.py)."""
        if "retransmit" in self.acts:
            return
        from test_tcpretrans import DropOnce
        pair = request.getfixturevalue("veth_pair")

        def connect() -> None:
            with DropOnce(pair, RETRANSMIT_PORT) as drop:
                pair.tcp_connections(1, RETRANSMIT_PORT)
                assert drop.dropped == 1
        self.acts["retransmit"] = {"during": connect, "system_wide": True,
                                   "filter": f"dport == {RETRANSMIT_PORT}"}
        self.counts["retransmit"] = {"tcp:tcp_retransmit_skb": 1}   # the truth, no rerun

    def baseline(self, name: str) -> dict[str, int]:
        return self.counts[name]


@pytest.fixture(scope="module")
def sleeper():
    proc = subprocess.Popen(["sleep", "600"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture(scope="module")
def oracle(workload, tmp_path_factory, request):
    tmp = tmp_path_factory.mktemp("passthrough")
    marker = tmp / "marker"
    marker.write_text("")
    try:
        disk = request.getfixturevalue("loop_disk")
    except pytest.skip.Exception:
        disk = None   # the block tools' tests skip, saying so
    return Oracle(actions(workload, str(marker), disk), tmp)


# -- the tests -----------------------------------------------------------------

def _tool_modules() -> set[str]:
    return {p.stem for p in (ROOT / "pytracekit" / "tools").glob("*.py")
            if not p.stem.startswith("_")}


def test_every_tool_is_classified():
    """A new tool must say how this test treats it."""
    assert _tool_modules() == set(TOOL_ARGS) | set(NOT_RUN)
    assert not set(TOOL_ARGS) & set(NOT_RUN)


def test_tools_not_run_have_no_tracepoint_probes():
    """NOT_RUN tools' own BPF C has no TRACEPOINT_PROBE (list's and doctor's
    attach_tracepoint programs are covered by the source check below)."""
    for tool in NOT_RUN:
        path = ROOT / "bpf" / f"{tool}.bpf.c"
        if path.exists():
            assert not re.search(r"(?<!RAW_)TRACEPOINT_PROBE", path.read_text()), tool


def tracepoint_bodies(text: str):
    """(head, body) of each TRACEPOINT_PROBE (not RAW_) in C source `text`."""
    for m in re.finditer(r"(?<!RAW_)TRACEPOINT_PROBE\s*\([^)]*\)\s*\{", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield m.group(0), text[m.end():i - 1]


def test_every_tracepoint_program_in_bpf_returns_pass():
    """Every return of every TRACEPOINT_PROBE, and of the functions tools
    attach with attach_tracepoint, is `return PTK_TP_PASS;`: paths the
    workloads below never take (a full map, a filtered-out event) too."""
    bodies = []
    for path in sorted((ROOT / "bpf").glob("*.[ch]")):
        bodies += [(f"{path.name}: {head}", body)
                   for head, body in tracepoint_bodies(path.read_text())]
    for name in ("doctor", "list"):   # on_tracepoint, attached with attach_tracepoint
        text = (ROOT / "bpf" / f"{name}.bpf.c").read_text()
        m = re.search(r"int on_tracepoint\(void \*ctx\)\s*\{(.*?)\n?\}", text, re.S)
        bodies.append((f"{name}.bpf.c: on_tracepoint", m.group(1)))
    assert len(bodies) > 50
    for where, body in bodies:
        returns = re.findall(r"\breturn\b[^;]*;", body)
        assert returns and all(r == "return PTK_TP_PASS;" for r in returns), (where, returns)


def test_generated_tracepoint_code_returns_pass():
    """stat's, trace's and funccount's generated C: PTK_TP_PASS on a
    tracepoint, 0 on a uprobe (our own perf event)."""
    from pytracekit.probes import specs as probes
    from pytracekit.tools import _probe_cli, funccount
    assert probes.program_return("tracepoint") == "PTK_TP_PASS"
    for kind in ("uprobe", "uretprobe", "kprobe", "kretprobe", "usdt"):
        assert probes.program_return(kind) == "0"
    tp = probes.ResolvedProbe("tracepoint", "syscalls:sys_enter_getpid", "sys_enter_getpid",
                              category="syscalls")
    up = probes.ResolvedProbe("uprobe", "getpid", "getpid", binary="/lib/libc.so.6")
    code = _probe_cli.generated(funccount.FUNCTION, [tp, up], [0, 1])[_probe_cli.PLACEHOLDER]
    assert code == ("int count_0(void *ctx) { count_probe(0); return PTK_TP_PASS; }\n"
                    "int count_1(void *ctx) { count_probe(1); return 0; }\n")


@pytest.mark.root
def test_doctor_leaves_getppid_to_perf(tmp_path):
    """doctor attaches a program to sys_enter_getppid and calls getppid for
    0.3 s: perf, counting doctor, sees at least the calls its uprobe saw."""
    out = tmp_path / "perf.csv"
    res = subprocess.run(["perf", "stat", "-x,", "-o", str(out), "-e",
                          "syscalls:sys_enter_getppid", "--", sys.executable, "-m",
                          "pytracekit", "doctor", "--json"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    [line] = [x for x in out.read_text().splitlines() if "sys_enter_getppid" in x]
    perf = int(line.split(",")[0])
    hits = {m.group(1): int(m.group(2))
            for m in re.finditer(r'"feature": ?"(tracepoints|uprobes)", ?"available": ?true, ?'
                                 r'"evidence": ?"attached, (\d+) hits', res.stdout)}
    assert set(hits) == {"tracepoints", "uprobes"}, res.stdout
    assert perf >= hits["uprobes"] > 0 and perf >= hits["tracepoints"] > 0, (perf, hits)


# Tools attached at once: each action's perf count then checks all of them (a
# program that drops an event makes perf miss it whichever tool it belongs to).
BATCH = 6


def _batches() -> list[list[str]]:
    tools = sorted(TOOL_ARGS)
    return [tools[i:i + BATCH] for i in range(0, len(tools), BATCH)]


@dataclass
class Checked:
    """What perf counted for one tool's tracepoints while its batch ran."""
    attached: set[str] = field(default_factory=set)
    checked: dict[str, tuple[int, int]] = field(default_factory=dict)   # tp -> (got, want)
    skip: str = ""
    alive: bool = True
    stopped: tuple[str, str] = ("", "")   # what it said when it ended early
    others: str = ""
    sharing: dict[str, list[str]] = field(default_factory=dict)   # tp -> batch tools on it
    error: BaseException | None = None    # its start failed


def _count_batch(tools: list[str], oracle, sleeper: int, tmp_path: Path,
                 request) -> dict[str, Checked]:
    """Start the batch's tools (compiling side by side), read which tracepoints
    each attached, count each action once with perf for all of them, then end them."""
    results = {tool: Checked() for tool in tools}
    running: dict[str, Tool] = {}
    try:
        def start(tool: str) -> None:
            args = [a.replace("{pid}", str(sleeper)) for a in TOOL_ARGS[tool]]
            try:
                running[tool] = Tool(tool, *args).start(timeout=180)   # side by side
            except BaseException as exc:   # its own test fails with it
                results[tool].error = exc
        with ThreadPoolExecutor(len(tools)) as pool:
            list(pool.map(start, tools))
        for tool, t in running.items():
            results[tool].attached = attached_tracepoints(t.proc.pid)
        union: dict[str, list[str]] = {}
        for tool, t in running.items():
            r = results[tool]
            missing = {({**EXACT, **FIRES}[tp])[0]
                       for tp in r.attached - UNFIRED if tp in EXACT or tp in FIRES}
            if "retransmit" in missing:
                try:
                    oracle.add_retransmit(request)
                except pytest.skip.Exception as exc:   # no network namespaces here
                    r.skip = str(exc)
                    continue
            missing -= set(oracle.acts)
            if missing:
                r.skip = f"no {', '.join(sorted(missing))} action here (needs a loop device)"
                continue
            for tp in r.attached:
                union.setdefault(tp, []).append(tool)
        counted: dict[str, tuple[int, int]] = {}
        by_action: dict[str, list[str]] = {}
        for tp in sorted(set(union) & set(EXACT)):
            by_action.setdefault(EXACT[tp][0], []).append(tp)
        for name, tps in by_action.items():
            want = oracle.baseline(name)
            got = perf_count(tps, oracle.acts[name], tmp_path)
            if any(got[tp] != want[tp] for tp in tps):   # once more: a passing tracer?
                got = perf_count(tps, oracle.acts[name], tmp_path)
            for tp in tps:
                counted[tp] = (got[tp], want[tp])
        lows: dict[str, list[str]] = {}
        for tp in sorted(set(union) & set(FIRES)):
            lows.setdefault(FIRES[tp][0], []).append(tp)
        for name, tps in lows.items():
            got = perf_count(tps, oracle.acts[name], tmp_path)
            for tp in tps:
                counted[tp] = (got[tp], FIRES[tp][1])
        for tool, t in running.items():
            r = results[tool]
            r.alive = t.proc.poll() is None
            if not r.alive:
                r.stopped = t.stop()
            if r.skip:
                continue
            r.checked = {tp: counted[tp] for tp in r.attached if tp in counted}
            r.sharing = {tp: [other for other in union[tp] if other != tool]
                         for tp in r.checked}
            if any(got != want or not want if tp in EXACT else got < want
                   for tp, (got, want) in r.checked.items()):
                r.others = other_tracers(set(r.checked), t.proc.pid)
        for t in running.values():
            if t.proc.poll() is None:
                for child in children(t.proc.pid):   # stat's held command
                    os.kill(child, signal.SIGKILL)
    finally:
        for t in running.values():
            t.__exit__(None, None, None)
    return results


@pytest.fixture(scope="module")
def batch_results(oracle, sleeper, tmp_path_factory, request):
    """tool -> its Checked; a tool's batch runs when its first test asks."""
    done: dict[str, Checked] = {}

    def result(tool: str) -> Checked:
        if tool not in done:
            batch = next(b for b in _batches() if tool in b)
            done.update(_count_batch(batch, oracle, sleeper,
                                     tmp_path_factory.mktemp("batch"), request))
        return done[tool]
    return result


@pytest.mark.root
@pytest.mark.alone("every-tool")   # its batch compiles every tool side by side: one batch at once (conftest)
@pytest.mark.parametrize("tool", sorted(TOOL_ARGS))
def test_perf_counts_every_event_while_the_tool_runs(tool, batch_results):
    r = batch_results(tool)
    if r.error is not None:
        raise r.error
    unknown = r.attached - set(EXACT) - set(FIRES) - UNFIRED
    assert not unknown, f"{tool} attaches {sorted(unknown)}: give each an action here"
    if r.skip:
        pytest.skip(r.skip)
    assert r.alive, r.stopped
    others = r.others
    for tp, (got, want) in r.checked.items():
        shared = (f" (tools of its batch also on it: {', '.join(r.sharing[tp])})"
                  if r.sharing.get(tp) else "")
        if tp in EXACT:
            truth = EXACT[tp][1]
            assert want == truth or 0 < -truth <= want, \
                f"{tp}: perf counts {want} without a tool, the truth is {truth}{others}"
            assert got == want, \
                f"{tool}: perf counted {got} {tp}, {want} without it{shared}{others}"
        else:
            assert got >= want, \
                f"{tool}: perf counted {got} {tp}, at least {want} fire{shared}{others}"
    if r.attached:
        assert r.checked, f"{tool} attaches {sorted(r.attached)}, none fired here"

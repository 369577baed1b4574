"""Stack samplers attached side by side to the same processes, each read back as
user stacks root first: pytracekit profile, perf record --call-graph dwarf, BCC's
profile-bpfcc and py-spy. The processes are stopped (SIGSTOP) while the samplers
start and until each samples (pytracekit says so on PYTRACEKIT_READY_FD; perf and
BCC hold their perf events open), then run until they have used a given CPU time
(so a loaded machine changes the wall time, not the sample count), are stopped
again, and the samplers end with SIGINT (each then writes what it has): every
sampler sees the same execution, whatever its start-up takes. py-spy cannot start
on a stopped process: with it the processes run throughout, it starts last (it
needs no set-up), and each sampler's count covers its own start-up too.

A result is a Counter of stacks (tuples of frame names, root first, the process's
own frames only: no comm, no kernel) plus the sampler's own cost."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (PY, ROOT, _vm_hwm_kib, bcc_kernel_tree, cpu_seconds,
                          perf_event_fds, wait_measured)

PYSPY = ROOT / "build" / "bench-venv" / "bin" / "py-spy"
# the program's start, as each tool names it (glibc's __libc_start_main is the
# versioned alias of __libc_start_main_impl, the name its debug info carries)
START_FRAMES = {"_start", "__libc_start_main", "__libc_start_main_impl",
                "__libc_start_call_main"}
ALIASES = {"__libc_start_main_impl": "__libc_start_main"}


def _canonical(name: str) -> str:
    """One spelling per function: perf prints a default symbol version
    (`__libc_start_main@@GLIBC_2.34`), pytracekit and BCC do not."""
    name = name.split("@@", 1)[0]
    return ALIASES.get(name, name)


# pytracekit's unnamed frame: MODULE+0xOFFSET; perf's, BCC's: [unknown]
UNNAMED = re.compile(r"^\[unknown\]$|\+0x[0-9a-f]+$")


@dataclass
class Result:
    stacks: Counter = field(default_factory=Counter)
    cpu_s: float = 0.0          # the sampler's own CPU (user + system) over its run
    peak_rss_kib: int = 0
    wall_s: float = 0.0         # launch to exit
    after_stop_s: float = 0.0   # SIGINT to exit: what it does once sampling ends
    error: str = ""
    loss: dict = field(default_factory=dict)   # pytracekit's loss counters, as it reports them

    @property
    def samples(self) -> int:
        return sum(self.stacks.values())

    def share(self, pred) -> float:
        n = self.samples
        return sum(c for s, c in self.stacks.items() if pred(s)) / n if n else float("nan")

    def unnamed_share(self) -> float:
        frames = unnamed = 0
        for stack, count in self.stacks.items():
            frames += len(stack) * count
            unnamed += sum(1 for f in stack if UNNAMED.search(f)) * count
        return unnamed / frames if frames else float("nan")


def reaches_start(stack: tuple[str, ...]) -> bool:
    return any(f in START_FRAMES for f in stack)


class Sampler:
    name = ""
    # can it start on a stopped process? (py-spy cannot: its ptrace suspend fails)
    starts_on_stopped = True

    def available(self) -> str:
        """"" when it can run here, else why not."""
        return ""

    def start(self, pids: list[int], hz: int) -> None:
        """Launch, sampling `pids` at `hz` until stop()."""
        raise NotImplementedError

    def wait_ready(self, timeout: float = 120) -> None:
        """Return once it samples: by default once it holds a perf event open."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _exited(self.proc):
            if perf_event_fds(self.proc.pid):
                time.sleep(0.3)   # the rest of its CPUs or threads
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopped_at = time.perf_counter()
        os.kill(self.proc.pid, signal.SIGINT)   # not Popen's: its poll() would reap it

    def finish(self) -> Result:
        raise NotImplementedError

    def _launch(self, argv: list[str], env: dict | None = None, **kw) -> None:
        # output to files, not pipes: the exit is reaped by wait4 (for the rusage)
        self.out_file, self.err_file = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(argv, cwd=ROOT, env={**os.environ, **(env or {})},
                                     stdout=self.out_file, stderr=self.err_file, text=True,
                                     **kw)
        self.peak = PeakRss(self.proc.pid)


class PeakRss:
    """A sampler's peak RSS, polled from its launch (a thread): side_by_side stops
    every sampler before it reaps any, so one that ends quickly is a zombie, with no
    VmHWM left, by the time wait_measured looks."""

    def __init__(self, pid: int) -> None:
        import threading
        self.pid, self.kib, self._done = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.wait(0.01):
            kib = _vm_hwm_kib(self.pid)
            if kib == 0 and self.kib:   # gone (a zombie has no VmHWM)
                return
            self.kib = max(self.kib, kib)

    def stop(self) -> int:
        self._done.set()
        self._thread.join()
        return self.kib


def _exited(proc: subprocess.Popen) -> bool:
    """Has it exited? Left unreaped (WNOWAIT) for wait_measured's rusage."""
    info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    return info is not None



def communicate_then_rusage(sampler: Sampler, timeout: float = 600) -> tuple[str, str, Result]:
    """Wait4 a sampler for its CPU and peak RSS, then read what it wrote."""
    res = Result()
    res.cpu_s, res.peak_rss_kib = wait_measured(sampler.proc, timeout)
    res.peak_rss_kib = max(res.peak_rss_kib, sampler.peak.stop())
    res.wall_s = time.perf_counter() - sampler.t0
    res.after_stop_s = time.perf_counter() - getattr(sampler, "stopped_at", sampler.t0)
    out, err = _read_and_close(sampler.out_file), _read_and_close(sampler.err_file)
    if sampler.proc.returncode != 0:
        res.error = f"rc={sampler.proc.returncode}: " + \
            ((err.strip().splitlines() or ["?"])[-1])[:120]
    return out, err, res


def _read_and_close(f) -> str:
    f.seek(0)
    text = f.read()
    f.close()
    return text


class Pytracekit(Sampler):
    """`pytracekit profile -U --json` (defaults: --unwind dwarf, --python); `kind`: keep
    only frames of that kind ("python")."""

    def __init__(self, *extra: str, name: str = "pytracekit profile", kind: str = ""):
        self.extra = list(extra)
        self.kind = kind
        self.name = name + (" " + " ".join(extra) if extra else "")

    argv_head = [PY, "-m", "pytracekit", "profile", "-U", "--json"]

    def start(self, pids, hz):
        self._launch_ready([*self.argv_head, "-F", str(hz), *self.extra,
                            "-p", ",".join(map(str, pids))])

    def _launch_ready(self, argv: list[str]) -> None:
        ready_r, ready_w = os.pipe()
        self._launch(argv, env={"PYTRACEKIT_READY_FD": str(ready_w)}, pass_fds=(ready_w,))
        os.close(ready_w)
        self.ready_r = ready_r

    def wait_ready(self, timeout: float = 120) -> None:
        import select
        select.select([self.ready_r], [], [], timeout)
        os.close(self.ready_r)

    def finish(self) -> Result:
        out, err, res = communicate_then_rusage(self)
        for line in out.splitlines():
            obj = json.loads(line)
            if obj["type"] == "stack":
                stack = tuple(_canonical(f["name"]) for f in obj["frames"]
                              if f["kind"] != "process" and self.kind in ("", f["kind"]))
                res.stacks[stack] += obj["value"]
            elif obj["type"] == "loss":
                res.loss = {k: v for k, v in obj.items() if k != "type"}
        return res


class PerfDwarf(Sampler):
    """`perf record -e cpu-clock --call-graph dwarf`, named by `perf script --no-inline`."""
    name = "perf record --call-graph dwarf"

    def __init__(self, keep: bool = False, stacks: bool = True):
        self.keep = keep        # leave the recording at self.data (the caller removes self.dir)
        self.want_stacks = stacks   # False: do not run perf script on it

    def available(self):
        return "" if shutil.which("perf") else "perf is not installed (linux-perf)"

    def start(self, pids, hz):
        self.dir = Path(tempfile.mkdtemp(prefix="ptk-bench-perf-"))
        self.data = self.dir / "perf.data"
        self._launch(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(hz),
                      "--call-graph", "dwarf", "-o", str(self.data),
                      "-p", ",".join(map(str, pids))])

    def finish(self) -> Result:
        _, _, res = communicate_then_rusage(self)
        if res.error.startswith("rc=-2") or res.error.startswith("rc=130"):
            res.error = ""   # its own SIGINT
        try:
            if not res.error and self.want_stacks:
                script = subprocess.run(["perf", "script", "--no-inline", "-i", str(self.data),
                                         "-F", "ip,sym"], capture_output=True, text=True,
                                        timeout=600).stdout
                res.stacks = perf_script_stacks(script)
        finally:
            if not self.keep:
                shutil.rmtree(self.dir, ignore_errors=True)
        return res


def perf_script_stacks(script: str) -> Counter:
    """`perf script -F ip,sym` (one block per sample, leaf first) as root-first stacks."""
    stacks = Counter()
    for block in script.split("\n\n"):
        frames = []
        for line in block.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]+", parts[0]):
                frames.append(_canonical(parts[1].removesuffix(" (inlined)")))
        if frames:
            stacks[tuple(reversed(frames))] += 1
    return stacks


class BccProfile(Sampler):
    """BCC's `profile-bpfcc -U -f` (frame pointers only); `args` replace `-U -f`."""
    name = "BCC profile-bpfcc"

    def __init__(self, *args: str):
        self.args = list(args) or ["-U", "-f"]

    def available(self):
        return "" if shutil.which("profile-bpfcc") else \
            "profile-bpfcc is not installed (bpfcc-tools)"

    def start(self, pids, hz):
        self.tree = bcc_kernel_tree()
        self._launch(["profile-bpfcc", *self.args, "-F", str(hz),
                      "-p", ",".join(map(str, pids))],
                     env={"BCC_KERNEL_SOURCE": str(self.tree)})

    def finish(self) -> Result:
        try:
            out, _, res = communicate_then_rusage(self)
        finally:
            shutil.rmtree(self.tree.parent, ignore_errors=True)
        res.stacks = folded_stacks(out, drop_first=True)
        return res


def folded_stacks(text: str, drop_first: bool) -> Counter:
    """Folded lines `a;b;c COUNT` (root first); drop_first: the first item is the comm."""
    stacks = Counter()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [_canonical(f) for f in stack.split(";")]
        stacks[tuple(frames[1:] if drop_first else frames)] += int(count)
    return stacks


class PySpy(Sampler):
    """py-spy record (bench-only, build/bench-venv), raw (folded) output; one process."""
    name = "py-spy record"
    starts_on_stopped = False

    def __init__(self, *extra: str):
        self.extra = list(extra)
        if extra:
            self.name += " " + " ".join(extra)

    def available(self):
        return "" if PYSPY.exists() else f"{PYSPY.relative_to(ROOT)} is missing (make bench)"

    def start(self, pids, hz):
        assert len(pids) == 1, "py-spy records one process"
        self.dir = Path(tempfile.mkdtemp(prefix="ptk-bench-pyspy-"))
        self.out = self.dir / "raw.txt"
        self._launch([str(PYSPY), "record", "-r", str(hz), "-f", "raw", "-o", str(self.out),
                      *self.extra, "-p", str(pids[0])])

    def wait_ready(self, timeout: float = 120) -> None:
        time.sleep(0.5)   # it reads the process with no set-up to wait for

    def finish(self) -> Result:
        _, _, res = communicate_then_rusage(self)
        try:
            if self.out.exists():
                res.error = ""   # py-spy exits non-zero when its target ends first
                res.stacks = folded_stacks(self.out.read_text(), drop_first=False)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)
        return res


def side_by_side(samplers: list[Sampler], pids: list[int], hz: int,
                 cpu_s: float) -> dict[str, Result]:
    """Every available sampler on `pids` while they use `cpu_s` CPU seconds between them
    (samples expected: about hz * cpu_s); a missing sampler is a Result with its reason
    as the error. The caller ends the processes (frozen ones are left stopped)."""
    results, running = {}, []
    freeze = all(s.starts_on_stopped for s in samplers)
    if freeze:
        _signal_all(pids, signal.SIGSTOP)
    # not frozen: the slow starters first, each sampling before the next starts
    for s in sorted(samplers, key=lambda s: not s.starts_on_stopped):
        why = s.available()
        if why:
            results[s.name] = Result(error=why)
            continue
        s.start(pids, hz)
        running.append(s)
        if not freeze:
            s.wait_ready()
    try:
        if freeze:
            for s in running:
                s.wait_ready()
        before = _cpu_of(pids)
        deadline = time.monotonic() + 30 * cpu_s + 60
        _signal_all(pids, signal.SIGCONT)
        while _cpu_of(pids) - before < cpu_s and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if freeze:
            _signal_all(pids, signal.SIGSTOP)
        for s in reversed(running):
            s.stop()
    for s in running:
        results[s.name] = s.finish()
    return results


def _cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            pass
    return total


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

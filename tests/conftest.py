"""Shared test helpers: the ground-truth workload and running tools for real.

Tests marked `root` load BPF programs; they skip (never pass) where that is
impossible, with the reason.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import os
import select
import signal
import subprocess
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKLOAD_SRC = ROOT / "tests" / "workload" / "workload.c"
WORKLOAD = ROOT / "tests" / "workload" / ".build" / "workload"


def _root_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load BPF programs"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "needs BCC's Python module (apt-get install python3-bpfcc)"
    if not Path("/sys/kernel/btf/vmlinux").exists() and not Path(
            f"/lib/modules/{os.uname().release}/build").exists():
        return "needs kernel BTF or kernel headers"
    return None


def pytest_configure(config):
    """A suite started as a background job (`make test &` in a script) has SIGINT
    ignored, and the tools it starts would inherit that (runner keeps a caller's
    SIG_IGN): every `Tool.stop()` then waited out its timeout. Ctrl-C is ours."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if _runs_workers(config):   # the workers, started after this, inherit it
        os.environ[ALONE_LOCKS] = tempfile.mkdtemp(prefix="pytracekit-suite-")


def pytest_unconfigure(config):
    if _runs_workers(config) and os.environ.get(ALONE_LOCKS):
        shutil.rmtree(os.environ.pop(ALONE_LOCKS), ignore_errors=True)


# `make test` runs the suite on several pytest-xdist workers, a test file on
# one worker (--dist loadfile: its module fixtures are made once). A test marked
# `alone` asserts about the whole machine (every CPU's samples, a resource's
# use over time): it runs while no other test does. Others take ALONE_LOCKS's
# room shared; an `alone` test takes it exclusive, holding the gate meanwhile so
# that no test starts in between (without it, the others' overlapping shared
# holds would keep it waiting to the end). `alone("NAME")`: no other test
# marked alone("NAME") runs meanwhile (a lock of that name, taken after the room).
ALONE_LOCKS = "PYTRACEKIT_SUITE_LOCKS"


def _runs_workers(config) -> bool:
    return not os.environ.get("PYTEST_XDIST_WORKER") and \
        bool(getattr(config.option, "numprocesses", None))


@contextlib.contextmanager
def _turn(alone: bool, names: list[str]):
    """Held while one test runs (its setup, call and teardown, with the module
    fixtures made or ended there) on an xdist worker; nothing otherwise.
    Always taken in one order (gate, room, names sorted): no deadlock."""
    locks = os.environ.get(ALONE_LOCKS)
    if not locks or not os.environ.get("PYTEST_XDIST_WORKER"):
        yield
        return
    with contextlib.ExitStack() as held:
        def lock(name: str, how: int):
            f = held.enter_context(open(os.path.join(locks, name), "a"))
            fcntl.flock(f, how)
            held.callback(fcntl.flock, f, fcntl.LOCK_UN)
            return f
        gate = lock("gate", fcntl.LOCK_EX)
        lock("room", fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        if not alone:
            fcntl.flock(gate, fcntl.LOCK_UN)
        for name in names:
            lock(f"named-{name}", fcntl.LOCK_EX)
        yield


# PYTRACEKIT_SUITE_TIMELINE=FILE: a line per test (worker, asked, began, ended: wall
# clock; test id), to see where a run's time goes: the gaps between a test's ask and
# its start are waits for an `alone` test's turn.
TIMELINE = "PYTRACEKIT_SUITE_TIMELINE"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    marks = list(item.iter_markers("alone"))
    asked = time.time()
    with _turn(any(not m.args for m in marks), sorted({m.args[0] for m in marks if m.args})):
        began = time.time()
        yield
    if os.environ.get(TIMELINE):
        with open(os.environ[TIMELINE], "a") as f:
            f.write(f"{os.environ.get('PYTEST_XDIST_WORKER', '-')} {asked:.3f} {began:.3f} "
                    f"{time.time():.3f} {item.nodeid}\n")


# On xdist workers (make test, --no-loadscope-reorder), these files are handed
# out first, in this order: a file runs on one worker, so a long one dealt last
# keeps the other worker idle at the end (longest-first packing). And a test
# waiting for its turn keeps its worker idle: the every-tool batches
# (alone("every-tool"), B below) wait for one another, and a file of `alone`
# tests (A) for whatever the other worker runs. So each B and A has files of
# other tests around it, which the other worker runs meanwhile (with the
# longest files first, B after B and A after A made 214 s of waits in a
# 600 s two-worker run: PYTRACEKIT_SUITE_TIMELINE). Seconds from such a run
# on a cold program cache; the rest follow in their usual order.
LONGEST_FILES = (
    "test_pid_exit.py",             # B 43
    "test_session.py",              # 26
    "test_stackcount.py",           # 16
    "test_bad_input.py",            # B 42
    "test_python_tools.py",         # 23
    "test_command_passthrough.py",  # 18
    "test_profile_python.py",       # A 33
    "test_systrace.py",             # 18
    "test_profile.py",              # 16
    "test_passthrough.py",          # B 32
    "test_unwind_space.py",         # 16
    "test_symbol_churn.py",         # A 35
    "test_memleak.py",              # 16
    "test_opensnoop.py",            # 15
    "test_cli.py",                  # B 23
    "test_profile_unwind.py",       # 29
    "test_export.py",               # 15
    "test_interval_args.py",        # B 15
    "test_mutexstat.py",            # 15
    "test_event_unwind.py",         # 15
    "test_teardown.py",             # 13
    # off-CPU times: beside a batch (it ran next to the first), a preemption inside
    # the command's hold at its entry was charged to the command (see the
    # fourteenth session's closing note)
    "test_blocked_stacks.py",       # 24
)


def _longest_first(items: list) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable


def pytest_collection_modifyitems(config, items):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        _longest_first(items)
    reason = _root_skip_reason()
    for item in items:
        if reason is not None and "root" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
        # Every veth pair has the same addresses and the tcp tools trace every
        # namespace: one test's connections to port P would be another's.
        if "veth_pair" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.alone("veth"))


@pytest.fixture(autouse=True)
def _restore_signal_handlers():
    """Tests that run a tool in-process must not leave its SIGTERM/SIGHUP
    handlers on pytest (forked helpers would inherit them)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def workload() -> str:
    """Path to the built ground-truth workload (built here if stale)."""
    return _built(WORKLOAD, ["-O0", "-g", "-fno-omit-frame-pointer", "-fno-inline", "-pthread"])


def _built(out: Path, flags: list[str]) -> str:
    """out, compiled from the workload's source with `flags` if missing or stale.
    Written to a temporary name and renamed: the suite's workers (pytest-xdist)
    may build it side by side, and none may run a half-written binary."""
    if not out.exists() or out.stat().st_mtime < WORKLOAD_SRC.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{os.getpid()}")
        subprocess.run(["gcc", *flags, "-o", str(tmp), str(WORKLOAD_SRC)], check=True)
        os.replace(tmp, out)
    return str(out)


NOFP_FLAGS = ["-O2", "-fomit-frame-pointer", "-fno-optimize-sibling-calls", "-fno-inline",
              "-g", "-pthread"]


def _build_nofp(out: Path) -> str:
    """The workload as distributions build: -O2, no frame pointers (rebuilt if stale)."""
    return _built(out, NOFP_FLAGS)


@pytest.fixture(scope="session")
def workload_nofp() -> str:
    """The workload built -O2 without frame pointers, with its own .symtab and DWARF."""
    return _build_nofp(WORKLOAD.parent / "workload-nofp")


@dataclass(frozen=True)
class StrippedWorkload:
    """A stripped no-frame-pointer workload whose symbols are only in
    DEBUG_ROOT/.build-id/xx/yyyy.debug; `env` points pytracekit there."""
    path: str
    debug_root: Path

    @property
    def env(self) -> dict[str, str]:
        return {"PYTRACEKIT_DEBUG_ROOT": str(self.debug_root)}


@pytest.fixture(scope="session")
def workload_stripped(tmp_path_factory) -> StrippedWorkload:
    base = tmp_path_factory.mktemp("stripped")
    path = base / "workload-stripped"
    _build_nofp(path)
    return _stripped(path, base)


DEBUG_FRAME_FLAGS = [*NOFP_FLAGS, "-fno-asynchronous-unwind-tables", "-fno-unwind-tables"]


def _build_debug_frame_only(out: Path) -> str:
    """The no-frame-pointer workload with .debug_frame as its only CFI: built
    -fno-asynchronous-unwind-tables -g, then the C runtime's small .eh_frame
    (_start, .plt) removed too."""
    subprocess.run(["gcc", *DEBUG_FRAME_FLAGS, "-o", str(out), str(WORKLOAD_SRC)], check=True)
    subprocess.run(["objcopy", "--remove-section", ".eh_frame", "--remove-section",
                    ".eh_frame_hdr", str(out)], check=True)
    return str(out)


@pytest.fixture(scope="session")
def workload_debug_frame(tmp_path_factory) -> str:
    return _build_debug_frame_only(tmp_path_factory.mktemp("debugframe") / "workload-df")


@pytest.fixture(scope="session")
def workload_debug_frame_stripped(tmp_path_factory) -> StrippedWorkload:
    """workload_debug_frame stripped: its .debug_frame and symbols only in the
    build-id debug file."""
    base = tmp_path_factory.mktemp("debugframe-stripped")
    path = base / "workload-df-stripped"
    _build_debug_frame_only(path)
    return _stripped(path, base)


def _stripped(path: Path, base: Path) -> StrippedWorkload:
    """Move path's debug sections to base/debug/.build-id/xx/yyyy.debug, strip it."""
    build_id = subprocess.run(["readelf", "-n", str(path)], capture_output=True, text=True,
                              check=True).stdout.split("Build ID:")[1].split()[0]
    debug = base / "debug" / ".build-id" / build_id[:2] / f"{build_id[2:]}.debug"
    debug.parent.mkdir(parents=True)
    subprocess.run(["objcopy", "--only-keep-debug", str(path), str(debug)], check=True)
    subprocess.run(["strip", "--strip-all", str(path)], check=True)
    # the system's debug files stay visible from the temp root (libc6-dbg's
    # __libc_start_call_main), as symlinks next to the workload's own
    system = Path("/usr/lib/debug/.build-id")
    for sub in system.glob("??") if system.is_dir() else []:
        for f in sub.glob("*.debug"):
            link = base / "debug" / ".build-id" / sub.name / f.name
            link.parent.mkdir(exist_ok=True)
            if not link.exists():
                link.symlink_to(f)
    return StrippedWorkload(str(path), base / "debug")


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@functools.lru_cache(maxsize=1)
def _nobody_cannot_import() -> str:
    """Why user nobody cannot run pytracekit from this checkout ("" if it can):
    a clone in a directory only root may enter (mktemp -d makes mode 0700)."""
    res = subprocess.run(NOBODY + [sys.executable, "-c", "import pytracekit"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    return "" if res.returncode == 0 else (res.stderr.strip().splitlines() or ["?"])[-1]


def pytracekit_as_nobody(*args: str) -> subprocess.CompletedProcess:
    """Run `pytracekit ARGS` unprivileged (the not-root error path): as user
    nobody when root, else as ourselves. Skips, saying why, where nobody cannot
    reach this checkout."""
    if os.geteuid() != 0:
        return pytracekit(*args)
    why = _nobody_cannot_import()
    if why:
        pytest.skip(f"user nobody cannot run pytracekit from {ROOT} ({why}): "
                    "the checkout's directory must be readable by others")
    return subprocess.run(NOBODY + [sys.executable, "-m", "pytracekit", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def pytracekit(*args: str, timeout: float = 90, env: dict | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m pytracekit ARGS` to completion."""
    return subprocess.run([sys.executable, "-m", "pytracekit", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd or ROOT,
                          env={**os.environ, **(env or {})})


def pytracekit_in_process(*args: str) -> subprocess.CompletedProcess:
    """`pytracekit ARGS` run by `cli.main` in this process: the stdout, stderr
    (file descriptors 1 and 2 too, so a C library's message would show) and
    status a subprocess would give, without an interpreter's start-up. For bad
    input, refused before anything is attached; tests of the launcher and of
    a real exit status use `pytracekit(...)`. Main thread only."""
    import tempfile
    from pytracekit.cli import command as cli
    streams = sys.stdout, sys.stderr
    for stream in streams:
        stream.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout, sys.stderr = (
                open(fd, "w", encoding="utf-8", errors="backslashreplace", closefd=False,
                     buffering=1) for fd in (1, 2))
            try:
                status = cli.main(list(args))
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            sys.stdout, sys.stderr = streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        texts = []
        for f in (out, err):
            f.seek(0)
            texts.append(f.read().decode("utf-8", errors="replace"))
    return subprocess.CompletedProcess(["pytracekit", *args], status, *texts)


class Tool:
    """A tool running in the background, for tests that must act while it traces.

    The tool writes a line to PYTRACEKIT_READY_FD once its probes are attached;
    `start()` returns only then, so the workload runs fully traced.
    """

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.args = args
        self.env = env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> "Tool":
        ready_r, ready_w = os.pipe()
        env = {**os.environ, **self.env, "PYTRACEKIT_READY_FD": str(ready_w)}
        self.proc = subprocess.Popen([sys.executable, "-m", "pytracekit", *self.args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=ROOT, env=env, pass_fds=(ready_w,))
        os.close(ready_w)
        try:
            ready, _, _ = select.select([ready_r], [], [], timeout)
            line = os.read(ready_r, 64) if ready else b""
        finally:
            os.close(ready_r)
        if not line:
            out, err = self.stop()
            raise AssertionError(f"tool never became ready (rc={self.proc.returncode})\n"
                                 f"stdout:\n{out}\nstderr:\n{err}")
        return self

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> tuple[str, str]:
        """Send `sig`, wait for the tool to print its results and exit."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        out, err = self.proc.communicate(timeout=timeout)
        return out, err

    def wait(self, timeout: float = 60) -> tuple[str, str]:
        """Wait for a tool that ends by itself (duration, command exit)."""
        assert self.proc is not None
        out, err = self.proc.communicate(timeout=timeout)
        return out, err

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def __enter__(self) -> "Tool":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def run_workload(workload: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([workload, *args], check=True, timeout=timeout,
                          capture_output=True, text=True)


def pytracekit_probes_left() -> list[str]:
    """Lines in tracefs that a pytracekit run could have left behind."""
    left = []
    for base in ("/sys/kernel/tracing", "/sys/kernel/debug/tracing"):
        for name in ("uprobe_events", "kprobe_events"):
            path = Path(base) / name
            if path.exists():
                left += [line for line in path.read_text().splitlines() if line.strip()]
    return left


def wait_until(predicate, timeout: float = 10, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return predicate()

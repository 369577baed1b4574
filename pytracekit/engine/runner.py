"""How a tool runs: its target (-p PID or `-- COMMAND`), how long, and stopping.

A command is forked first and held before exec, so its pid can be compiled
into the BPF program and probes are attached before its first instruction;
`release()` lets it run, exactly as it would run without pytracekit; if the
tool dies or gives up first, it never runs. A -p process (or the last of a
pid list) ending ends the run, as with perf. SIGTERM and SIGHUP end the run
like Ctrl-C, so every tool prints its results and detaches on all three (one
the caller ignored, as nohup does SIGHUP, stays ignored).
"""
from __future__ import annotations

import _signal   # signal.signal's C half: no enum conversions (a stack tool polls ~80 times a second)
import contextlib
import errno
import os
import select
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..errors import NotFoundError, UsageError


class Stop(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM/SIGHUP; handled like Ctrl-C."""

    @property
    def signum(self) -> int:
        return signal.Signals[self.args[0]].value if self.args else signal.SIGINT.value


def interrupted_status(exc: KeyboardInterrupt) -> int:
    """Exit status of a run a signal ended before it was tracing: 128 + signal."""
    return 128 + getattr(exc, "signum", signal.SIGINT.value)


_handler_owner = 0   # the pid that installed _raise_stop

_claimed = False     # see claimed_signals
_tracing = False     # the claimed run told its harness it is tracing (signal_ready)

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOP_NUMBERS = tuple(int(sig) for sig in STOPS)
# What the caller left ignored (nohup, a background job): so stays a command's.
_IGNORED_BY_CALLER = frozenset(sig for sig in STOPS
                               if signal.getsignal(sig) is signal.SIG_IGN)


def _raise_stop(signum: int, _frame: object) -> None:
    if os.getpid() != _handler_owner:
        # A forked child (pyroute2's netns helper, a held command before exec)
        # inherited the handler: it must simply die, not unwind the tool's code.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Stop(signal.Signals(signum).name)


@contextlib.contextmanager
def signals_deferred(pending: list[int]) -> Iterator[list[int]]:
    """Record SIGINT/SIGTERM/SIGHUP in `pending` instead of raising while the
    block runs: for calls into C that run Python callbacks (BCC's ring buffer
    poll), where a signal raised between callbacks is printed and dropped by
    ctypes, so the tool would never stop. Check `pending` after (raise_pending)
    and in the callbacks (return -1 to make libbpf stop consuming). Signals
    reach the main thread only: elsewhere (export's scrape thread reading a
    stack tool) there is nothing to defer, and signal.signal would raise."""
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    _deferring.append(pending)   # before the handler: it appends to the innermost
    try:
        if len(_deferring) > 1:   # nested (a stack tool's poll): handlers are set
            yield pending
            return
        # A signal ignored now (by the caller, or once a run ended) stays ignored.
        saved = {sig: _signal.signal(sig, _record_deferred)
                 for sig in _STOP_NUMBERS if _signal.getsignal(sig) != _signal.SIG_IGN}
        try:
            yield pending
        finally:
            for sig, handler in saved.items():
                _signal.signal(sig, handler)
    finally:
        _deferring.pop()   # after the handlers are back: a signal between raises


# the pending lists of the signals_deferred blocks in force, innermost last
_deferring: list[list[int]] = []


def stop_pending() -> bool:
    """Has a signals_deferred block in force recorded a stop signal? A wait
    about to begin inside it should not: the run is ending (a signal that came
    between two waits interrupts neither)."""
    return any(_deferring)


def _record_deferred(signum: int, _frame: object) -> None:
    _deferring[-1].append(signum)


def raise_pending(pending: list[int]) -> None:
    if pending:
        raise Stop(signal.Signals(pending[0]).name)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Around a C call that runs Python callbacks and cannot be told to stop
    (BCC's symbol and USDT enumeration, libbpf's btf_dump): a stop signal
    raised inside a callback would be printed and dropped by ctypes, so it is
    held until the call returns, then raised as usual. Main thread only (the
    only one signals reach)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    with signals_deferred(pending):
        yield
    raise_pending(pending)


@contextlib.contextmanager
def stops_end_at_once() -> Iterator[None]:
    """Around a long C call that leaves nothing to undo if the process ends
    inside it (clang compiling a program; the loads, attaching BCC does then):
    Python runs a handler only between bytecodes, so a stop signal would wait
    for the call's end, however long (a loaded machine, a file clang blocks
    on), and one raised in a ctypes callback inside it (BCC's USDT
    enumeration) is dropped. The pytracekit command ends at once instead,
    from a thread woken by the signal's byte on Python's wakeup fd, with
    128+signal as for any stop before tracing began: what the kernel holds
    (maps, programs, perf links) goes with the process, and a held command
    sees EOF and never runs. Not once tracing began (the results are owed),
    nor for a library caller (its signals are its own), nor off the main thread."""
    if not _claimed or _tracing or threading.current_thread() is not threading.main_thread():
        yield
        return
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def watch() -> None:
        while True:
            for signum in os.read(wake_r, 64) or b"\0":
                if signum == 0:           # the block ended
                    return
                if signum in _STOP_NUMBERS:
                    os._exit(128 + signum)
    watcher = threading.Thread(target=watch, name="pytracekit-stop-watch", daemon=True)
    watcher.start()
    previous = signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous)
        os.write(wake_w, b"\0")
        watcher.join()
        os.close(wake_r)
        os.close(wake_w)


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP raise Stop, Ctrl-C KeyboardInterrupt: in force from
    cli.main on, so a tool stopped while it compiles or attaches unwinds
    through its finally blocks (probes detached, command never run). A signal
    the caller ignored stays ignored for the whole run, as during the imports
    (__main__): `nohup pytracekit ...` outlives its terminal, as perf and BCC's
    tools do."""
    global _handler_owner
    _handler_owner = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if sig not in _IGNORED_BY_CALLER:
            signal.signal(sig, _raise_stop)
    if signal.SIGINT not in _IGNORED_BY_CALLER:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def check_pid(pid: int) -> int:
    if pid <= 0 or not os.path.exists(f"/proc/{pid}"):
        raise NotFoundError(f"no process with pid {pid}")
    return pid


def check_runnable(program: str) -> str:
    """Fail before compiling anything, with the error exec would give later."""
    if program.startswith("-"):
        # tools with ignore_unknown_options hand a mistyped option on as the command
        raise UsageError(f"no such option: {program} (see --help; a command to run goes "
                         "after --)")
    path = program if "/" in program else _which(program)
    if path is None or not os.path.exists(path):
        raise NotFoundError(f"cannot run {program}: No such file or directory "
                            "(give a path to an executable or a command on PATH)")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise NotFoundError(f"cannot run {program}: Permission denied "
                            "(give a path to an executable file)")
    return path


def _which(program: str) -> str | None:
    """shutil.which without importing shutil (it imports bz2 and lzma, a cost
    at every start of a command)."""
    search = os.environ.get("PATH", os.defpath)
    for directory in search.split(os.pathsep) if search else []:
        path = os.path.join(directory, program)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
    return None


# Set in the environment by a test harness for the tool, never for the command.
READY_FD_ENV = "PYTRACEKIT_READY_FD"

# Commands pytracekit forked and holds before exec: the loader compiles a
# FILTER_PID that is one of these with FILTER_AFTER_EXEC (see pytracekit.h),
# so nothing the tool's child does before exec is counted as the command's.
held_commands: set[int] = set()


def _pidfd(pid: int, thread: bool = False) -> int:
    try:
        # O_CLOEXEC always; a thread's own pidfd is PIDFD_THREAD (= O_EXCL, Linux 6.9)
        return os.pidfd_open(pid, os.O_EXCL if thread else 0)
    except ProcessLookupError:
        return -1                   # already gone
    except OSError:
        return -2                   # no pidfd here: poll /proc instead


@dataclass
class Target:
    """What a tool watches: everything, one pid, or a command it starts.

    `watched` are the -p processes (a stack tool's pid list): the run ends
    when the last of them exits, as perf's does."""

    pid: int = 0                      # 0: system-wide
    command: tuple[str, ...] = ()
    child: int = 0
    exit_status: int | None = None
    watched: tuple[int, ...] = ()
    exited_at: float | None = None    # when the command or the last -p process was seen gone
    _go_w: int = -1
    _err_r: int = -1
    _pidfds: dict[int, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_options(cls, pid: int | None, command: tuple[str, ...] | list[str]) -> "Target":
        command = tuple(command or ())
        if pid and command:
            raise UsageError("give either -p PID or -- COMMAND, not both")
        if pid:
            target = cls(pid=check_pid(pid))
            target.watch([pid])
            return target
        target = cls(command=command)
        if command:
            target._spawn(check_runnable(command[0]))
        return target

    def watch(self, pids: list[int], threads: bool = False) -> None:
        """End the run when the last of these processes (or threads) exits.
        Opened now, so a recycled pid cannot stand in for one that exits while
        compiling."""
        self.watched = tuple(pids)
        self._pidfds = {pid: _pidfd(pid, threads) for pid in pids}

    def _spawn(self, path: str) -> None:
        """Fork the command and hold it before exec until release().

        The child keeps the terminal's stdin/stdout/stderr, the cwd and the
        environment the tool was started with (less the harness's ready fd).
        Everything it must do is done before it waits, so that between
        release and exec it only returns from read() and calls execve() on
        the path resolved here; probes ignore it until its exec anyway. EOF
        instead of the go byte (the tool died or gave up) means: never run."""
        env = {k: v for k, v in os.environ.items() if k != READY_FD_ENV}
        ready_fd = os.environ.get(READY_FD_ENV, "")
        argv = list(self.command)
        go_r, self._go_w = os.pipe()          # os.pipe(): both ends O_CLOEXEC
        self._err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(self._go_w)          # else EOF could never come
                os.close(self._err_r)
                _child_signals()
                if ready_fd.isdigit():
                    os.set_inheritable(int(ready_fd), False)
                if os.read(go_r, 1) == b"g":
                    _exec(path, argv, env)
            except OSError as exc:
                os.write(err_w, f"{exc.strerror}".encode())
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(err_w)
        self.child = self.pid = pid
        held_commands.add(pid)
        self._pidfds = {pid: _pidfd(pid)}

    def release(self) -> None:
        """Let a held command exec; report at once if it cannot."""
        if self._go_w < 0:
            return
        self.started = time.monotonic()   # before the write: the command may finish at once
        try:
            os.write(self._go_w, b"g")
        except BrokenPipeError:   # the held child was killed: the run ends as "exited"
            pass
        os.close(self._go_w)
        self._go_w = -1
        message = os.read(self._err_r, 512).decode()  # EOF (b"") once exec succeeded
        os.close(self._err_r)
        self._err_r = -1
        if message:
            self._reap(block=True)
            raise NotFoundError(f"cannot run {self.command[0]}: {message}")

    def _reap(self, block: bool = False) -> bool:
        if not self.child or self.exit_status is not None:
            return self.exit_status is not None
        try:
            pid, status = os.waitpid(self.child, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.exit_status = 0
            return True
        if pid == 0:
            return False
        self.exit_status = os.waitstatus_to_exitcode(status)
        return True

    @property
    def exited(self) -> bool:
        """The command exited, or every -p process did."""
        if self.exited_at is not None:
            return True
        if self.child:
            gone = self._reap()
        elif self.watched:
            gone = all(self._gone(pid) for pid in self.watched)
        else:
            return False
        if gone:
            self.exited_at = time.monotonic()
        return gone

    def _gone(self, pid: int) -> bool:
        fd = self._pidfds.get(pid, -2)
        if fd == -1:
            return True
        if fd == -2:
            return not os.path.exists(f"/proc/{pid}")
        return bool(_readable([fd], 0))

    def wait(self, timeout: float) -> None:
        """Sleep up to `timeout` seconds, waking the moment the target exits."""
        fds = [fd for fd in self._pidfds.values() if fd >= 0]
        if fds and self.exited_at is None:
            _readable(fds, timeout)
        else:
            time.sleep(timeout)

    def finish(self) -> None:
        """On the way out: a command still running is stopped (perf does the same)."""
        if self._go_w >= 0:  # never released: the child sees EOF and exits unrun
            os.close(self._go_w)
            self._go_w = -1
        if self.child and not self._reap():
            try:
                os.kill(self.child, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._reap(block=True)
        while self._pidfds:
            fd = self._pidfds.popitem()[1]
            if fd >= 0:
                os.close(fd)


def _exec(path: str, argv: list[str], env: dict[str, str]) -> None:
    try:
        os.execve(path, argv, env)
    except OSError as exc:
        if exc.errno != errno.ENOEXEC:
            raise
        # an executable text file without #!: run by sh, as shells and execvp do
        os.execve("/bin/sh", ["/bin/sh", path, *argv[1:]], env)


def _readable(fds: list[int], timeout: float) -> list[tuple[int, int]]:
    """poll(2), not select: fd numbers may pass 1024 once many probes are open."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    return poller.poll(timeout * 1000)


def _child_signals() -> None:
    """In the held child: signals as a plain run would get them. Python's own
    handlers die at exec anyway, but until then SIGINT/SIGTERM/SIGHUP must just
    kill the held child; SIGPIPE and SIGXFSZ, which Python ignores, go back to
    the default (as subprocess does). Signals the caller ignored stay ignored."""
    for sig in STOPS:
        signal.signal(sig, signal.SIG_IGN if sig in _IGNORED_BY_CALLER else signal.SIG_DFL)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)


def signal_ready() -> None:
    """Tell a waiting test harness that probes are attached (PYTRACEKIT_READY_FD)."""
    global _tracing
    _tracing = True
    from . import startup
    startup.report()
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd:
        try:
            os.write(int(fd), b"ready\n")
            os.close(int(fd))
        except OSError:
            pass
    from . import dccache
    dccache.done()   # attached: done with what __main__ installed (nothing if not)


def announce(message: str) -> None:
    """The "Tracing... Hit Ctrl-C to end." line: on stderr, so stdout stays data."""
    import sys
    print(message, file=sys.stderr, flush=True)


def run_until_done(target: Target, *, duration: float | None = None,
                   interval: float | None = None, on_interval: Callable[[], None] | None = None,
                   poll: Callable[[int], None] | None = None,
                   unwatched_wait: float = 0.1) -> str:
    """Block until the duration ends, the command or every -p process exits,
    or Ctrl-C/SIGTERM.

    `poll(timeout_ms)` lets streaming tools consume events while waiting;
    `on_interval` prints periodic output. Returns why the run ended:
    "duration", "exited" or "interrupted". A wait lasts 0.1 s at most, for a
    look at the command or the -p processes; with neither (system-wide),
    `unwatched_wait` at most: a poll that wakes for all it needs (events, its
    own due times) can wait longer, and each wake-up costs CPU.
    """
    install_signal_handlers()
    try:
        # Inside the try: a signal may arrive the moment the harness hears "ready".
        signal_ready()
        target.release()
        start = time.monotonic()
        next_tick = start + interval if interval else None
        while True:
            now = time.monotonic()
            if duration is not None and now - start >= duration:
                return "duration"
            if target.exited:
                return "exited"
            deadlines = [now + (0.1 if target.child or target.watched else unwatched_wait)]
            if duration is not None:
                deadlines.append(start + duration)
            if next_tick is not None:
                deadlines.append(next_tick)
            wait = max(0.0, min(deadlines) - now)
            if poll is not None:
                poll(int(wait * 1000))
            else:
                target.wait(wait)
            if next_tick is not None and time.monotonic() >= next_tick and on_interval:
                on_interval()
                next_tick += interval
    except KeyboardInterrupt:
        return "interrupted"
    finally:
        try:
            ignore_stops()
        except KeyboardInterrupt:   # one that came just before
            ignore_stops()


def ignore_stops() -> None:
    """Once a run of the pytracekit command has ended: a late Ctrl-C, SIGTERM
    or SIGHUP (a second press, or one racing the command's exit) must not cut
    the results short or leave probes attached, so the tool prints, detaches
    and exits. The next run_until_done (stat -r) arms them again. A program
    using pytracekit as a library (no claimed_signals) keeps its handlers."""
    if _claimed:
        for sig in STOPS:
            signal.signal(sig, signal.SIG_IGN)


@contextlib.contextmanager
def claimed_signals() -> Iterator[None]:
    """cli.main, for one run: this process is the pytracekit command; stop
    signals are handled from now on (install_signal_handlers) and ignored once
    the run ended. The claim ends with the run (an in-process run in a test
    must not make the next test's library use ignore them)."""
    global _claimed, _tracing
    saved, _claimed, _tracing = (_claimed, _tracing), True, False
    try:
        install_signal_handlers()
        yield
    finally:
        _claimed, _tracing = saved

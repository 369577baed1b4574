"""How a tool runs: its target (-p PID or `-- COMMAND`), how long, and stopping.

A command is forked first and held before exec, so its pid can be compiled
into the BPF program and probes are attached before its first instruction;
`release()` lets it run. SIGTERM and SIGHUP end the run like Ctrl-C, so every
tool prints its results and detaches on all three.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from .errors import NotFoundError, UsageError

# After a run ends the probes still fire until the program is closed: tools
# that print every event drain their buffer for at most this long.
FINAL_DRAIN_S = 0.2


class Stop(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM/SIGHUP; handled like Ctrl-C."""


_handler_owner = 0   # the pid that installed _raise_stop


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
    and in the callbacks (return -1 to make libbpf stop consuming)."""
    stoppers = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    saved = {sig: signal.signal(sig, lambda signum, _frame: pending.append(signum))
             for sig in stoppers}
    try:
        yield pending
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def raise_pending(pending: list[int]) -> None:
    if pending:
        raise Stop(signal.Signals(pending[0]).name)


def install_signal_handlers() -> None:
    global _handler_owner
    _handler_owner = os.getpid()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)


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
    path = program if "/" in program else shutil.which(program)
    if path is None or not os.path.exists(path):
        raise NotFoundError(f"cannot run {program}: No such file or directory "
                            "(give a path to an executable or a command on PATH)")
    if os.path.isdir(path) or not os.access(path, os.X_OK):
        raise NotFoundError(f"cannot run {program}: Permission denied "
                            "(give a path to an executable file)")
    return path


@dataclass
class Target:
    """What a tool watches: everything, one pid, or a command it starts."""

    pid: int = 0                      # 0: system-wide
    command: tuple[str, ...] = ()
    child: int = 0
    exit_status: int | None = None
    _go_w: int = -1
    _err_r: int = -1
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def from_options(cls, pid: int | None, command: tuple[str, ...] | list[str]) -> "Target":
        command = tuple(command or ())
        if pid and command:
            raise UsageError("give either -p PID or -- COMMAND, not both")
        if pid:
            return cls(pid=check_pid(pid))
        target = cls(command=command)
        if command:
            check_runnable(command[0])
            target._spawn()
        return target

    def _spawn(self) -> None:
        go_r, self._go_w = os.pipe()
        self._err_r, err_w = os.pipe()
        os.set_inheritable(err_w, False)
        pid = os.fork()
        if pid == 0:  # child: wait for release, then exec
            try:
                os.close(self._go_w)
                os.close(self._err_r)
                os.read(go_r, 1)
                os.close(go_r)
                os.set_blocking(err_w, True)
                fd = os.open("/dev/null", os.O_RDONLY)  # tools own the terminal's stdin
                os.dup2(fd, 0)
                os.execvp(self.command[0], list(self.command))
            except OSError as exc:
                os.write(err_w, f"{exc.strerror}".encode())
            finally:
                os._exit(127)
        os.close(go_r)
        os.close(err_w)
        self.child = self.pid = pid

    def release(self) -> None:
        """Let a held command exec; report at once if it cannot."""
        if self._go_w < 0:
            return
        self.started = time.monotonic()   # before the write: the command may finish at once
        os.write(self._go_w, b"g")
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
        return bool(self.child) and self._reap()

    def finish(self) -> None:
        """On the way out: a command still running is stopped (perf does the same)."""
        if self._go_w >= 0:  # never released: the tool failed before attaching
            os.close(self._go_w)
            self._go_w = -1
        if self.child and not self._reap():
            try:
                os.kill(self.child, signal.SIGTERM)
            except ProcessLookupError:
                pass
            self._reap(block=True)


def signal_ready() -> None:
    """Tell a waiting test harness that probes are attached (PYTRACEKIT_READY_FD)."""
    fd = os.environ.pop("PYTRACEKIT_READY_FD", None)
    if fd:
        try:
            os.write(int(fd), b"ready\n")
            os.close(int(fd))
        except OSError:
            pass


def announce(message: str) -> None:
    """The "Tracing... Hit Ctrl-C to end." line: on stderr, so stdout stays data."""
    import sys
    print(message, file=sys.stderr, flush=True)


def run_until_done(target: Target, *, duration: float | None = None,
                   interval: float | None = None, on_interval: Callable[[], None] | None = None,
                   poll: Callable[[int], None] | None = None) -> str:
    """Block until the duration ends, the command exits, or Ctrl-C/SIGTERM.

    `poll(timeout_ms)` lets streaming tools consume events while waiting;
    `on_interval` prints periodic output. Returns why the run ended:
    "duration", "exited" or "interrupted".
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
            deadlines = [now + 0.1]
            if duration is not None:
                deadlines.append(start + duration)
            if next_tick is not None:
                deadlines.append(next_tick)
            wait = max(0.0, min(deadlines) - now)
            if poll is not None:
                poll(int(wait * 1000))
            else:
                time.sleep(wait)
            if next_tick is not None and time.monotonic() >= next_tick and on_interval:
                on_interval()
                next_tick += interval
    except KeyboardInterrupt:
        return "interrupted"

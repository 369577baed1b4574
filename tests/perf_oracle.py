"""perf as an oracle running next to a tool. Every perf a test starts in the
background runs through `perf_running`: in a process group of its own, killed
with whatever it runs when the test leaves the block still running it (a
failed assertion, a timeout, Ctrl-C), so no `perf stat -a` keeps counting,
and perturbing, the rest of the suite. `SystemWideCount`: `perf stat -a`
counts of tracepoints, each with its own filter, from start to stop()."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def perf_running(argv: list[str], **popen) -> Iterator[subprocess.Popen]:
    """`perf ARGS` started in a new session; on leaving the block, if perf
    still runs, its whole process group (perf and the command it counts) is
    killed and reaped."""
    proc = subprocess.Popen(argv, start_new_session=True, **popen)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        proc.wait()


class SystemWideCount:
    """`with SystemWideCount(events, tmp_path) as perf: ... perf.stop()`:
    leaving the block kills a perf that stop() did not end."""

    def __init__(self, events: list[tuple[str, str]], tmp_path: Path) -> None:
        """events: (tracepoint, perf filter) pairs, counted in that order.
        Returns once counting began: perf starts its command (which says "go",
        then waits for stop()) after enabling its counters. Its output file
        is made earlier, before even its SIGINT handler is set."""
        self.out = tmp_path / "perf-stat.csv"
        args = ["perf", "stat", "-a", "-x,", "-o", str(self.out)]
        for event, filter_text in events:
            args += ["-e", event, "--filter", filter_text]
        self.events = events
        self._running = contextlib.ExitStack()
        self.proc = self._running.enter_context(perf_running(
            args + ["--", "sh", "-c", "echo go; read done"], text=True,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE))
        try:
            assert self.proc.stdout.readline() == "go\n", "perf stat never began counting"
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self._running.close()

    def __enter__(self) -> "SystemWideCount":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> list[int]:
        self.proc.communicate("done\n", timeout=60)
        assert self.proc.returncode == 0, self.proc.returncode
        counts = [int(line.split(",")[0]) for line in self.out.read_text().splitlines()
                  if line and not line.startswith("#") and "," in line]
        assert len(counts) == len(self.events), self.out.read_text()
        return counts

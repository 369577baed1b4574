"""Many `pytracekit ARGS` runs through a few long-lived processes.

Each worker is a Python process that runs one `pytracekit ARGS` after another
through `cli.main` (conftest.pytracekit_in_process: its stdout, stderr and
status) and answers each with one JSON line. A compile in a fresh process
pays for loading BCC and LLVM first (about a third of a dry run's CPU time):
a worker pays it once. Only for runs that attach nothing and end by
themselves (--dry-run); a tool's real run and its exit status are tested on
a process of its own (conftest.pytracekit).

A worker that dies (a compiler that exit()s) fails only the run it was on:
the next run gets a new worker.
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import ROOT

# Each run starts where the worker started: a run that left another working
# directory fails the next one (it would change what the next run tests).
WORKER = ("import json, os, sys\n"
          "sys.path.insert(0, sys.argv[1])\n"
          "from conftest import pytracekit_in_process\n"
          "start = os.getcwd()\n"
          "for line in sys.stdin:\n"
          "    if os.getcwd() != start:\n"
          "        sys.exit(f'the previous run left the working directory {os.getcwd()}')\n"
          "    res = pytracekit_in_process(*json.loads(line))\n"
          "    sys.stdout.write(json.dumps([res.returncode, res.stdout, res.stderr]) + '\\n')\n"
          "    sys.stdout.flush()\n")


class _Worker:
    def __init__(self, cwd: Path) -> None:
        # stderr to a file: a pipe nobody reads could fill and block the worker
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, str(ROOT / "tests")],
                                     cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)

    def run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess | Exception:
        """One run's result, or the exception its test fails with (the worker is then gone)."""
        answer: list[str] = []
        reader = threading.Thread(target=lambda: answer.append(self.proc.stdout.readline()))
        try:
            self.proc.stdin.write(json.dumps(args) + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass   # died: the read below says so
        reader.start()
        reader.join(timeout)
        if not answer or not answer[0]:
            self.proc.kill()
            self.proc.wait()
            reader.join()
            self.err.seek(0)
            err = self.err.read().decode(errors="replace")[-3000:]
            what = "no answer within {:.0f} s".format(timeout) if not answer else \
                f"the worker exited with status {self.proc.returncode}"
            return subprocess.SubprocessError(f"pytracekit {' '.join(args)}: {what}\n{err}")
        status, out, err = json.loads(answer[0])
        return subprocess.CompletedProcess(["pytracekit", *args], status, out, err)

    def close(self) -> None:
        try:
            self.proc.stdin.close()   # its end: the worker's loop ends
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.err.close()


def run_all(runs: dict[str, list[str]], workers: int = 2, timeout: float = 120,
            cwd: Path = ROOT) -> dict[str, subprocess.CompletedProcess | Exception]:
    """name -> the result of `pytracekit ARGS` for each (name, ARGS) in `runs`, on
    `workers` processes side by side (a compile keeps one CPU busy), started in
    `cwd` (this checkout's code wherever that is)."""
    todo: queue.Queue = queue.Queue()
    for name in runs:
        todo.put(name)
    results: dict[str, subprocess.CompletedProcess | Exception] = {}

    def serve() -> None:
        worker = _Worker(cwd)
        try:
            while True:
                try:
                    name = todo.get_nowait()
                except queue.Empty:
                    return
                res = results[name] = worker.run(runs[name], timeout)
                if isinstance(res, Exception):   # it is gone: a new one for the rest
                    worker.close()
                    worker = _Worker(cwd)
        finally:
            worker.close()
    with ThreadPoolExecutor(workers) as pool:
        for done in [pool.submit(serve) for _ in range(workers)]:
            done.result()
    return results

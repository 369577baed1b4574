"""`perf stat -a` as an oracle running next to a tool: counts of tracepoints,
each with its own filter, from start() to stop()."""
from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from conftest import wait_until


class SystemWideCount:
    def __init__(self, events: list[tuple[str, str]], tmp_path: Path) -> None:
        """events: (tracepoint, perf filter) pairs, counted in that order."""
        self.out = tmp_path / "perf-stat.csv"
        args = ["perf", "stat", "-a", "-x,", "-o", str(self.out)]
        for event, filter_text in events:
            args += ["-e", event, "--filter", filter_text]
        self.events = events
        self.proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
        # perf creates its output file once counting began
        wait_until(lambda: self.out.exists(), timeout=20)

    def stop(self) -> list[int]:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)
        counts = [int(line.split(",")[0]) for line in self.out.read_text().splitlines()
                  if line and not line.startswith("#") and "," in line]
        assert len(counts) == len(self.events), self.out.read_text()
        return counts

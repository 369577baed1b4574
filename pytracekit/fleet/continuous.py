"""Continuous profiling: cut a running stack tool's cumulative profile into
windows and ship each window as pprof, to a rotating directory or to a
Pyroscope-compatible /ingest endpoint."""
from __future__ import annotations

import queue
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .. import outfile
from ..model import LossReport, Sample, StackProfile


class Windower:
    """Turns cumulative profiles into per-window ones by subtracting what the
    previous read saw, stack by stack. The kernel maps are never cleared, so no
    sample that lands between a read and a clear can be lost."""

    def __init__(self) -> None:
        self.seen: dict[tuple, int] = {}
        self.last_loss = LossReport()

    def window_loss(self, cumulative: LossReport, samples: list[Sample]) -> LossReport:
        """The window's own losses: the program's counters since the last read
        (all of a counter that went back: the program was restarted), and the
        unnamed frames among the window's own stacks."""
        now, before = cumulative.as_dict(), self.last_loss.as_dict()
        own = {k: (v - before[k] if v >= before[k] else v) for k, v in now.items()}
        own["unknown_frames"] = sum(f.unknown for s in samples for f in s.stack)
        self.last_loss = cumulative
        return LossReport(**own)

    def window(self, cumulative: StackProfile, duration_ns: int) -> StackProfile:
        samples, seen = [], {}
        for s in cumulative.samples:
            key = (s.stack, s.pid, s.tid, s.comm)
            seen[key] = seen.get(key, 0) + s.value
        for key, value in seen.items():
            delta = value - self.seen.get(key, 0)
            if delta > 0:
                stack, pid, tid, comm = key
                samples.append(Sample(stack, delta, pid, tid, comm))
        self.seen = seen
        return StackProfile(samples, cumulative.value_type, cumulative.unit, cumulative.period,
                            duration_ns, self.window_loss(cumulative.loss, samples),
                            dict(cumulative.meta))


class RotatingDir:
    """KIND-YYYYmmddTHHMMSS.mmmZ.pb.gz files in a directory, the newest `keep`
    of each kind kept. Written through outfile.write_file: a reader never sees
    half a file, and a failed write leaves nothing behind."""

    SUFFIX = ".pb.gz"

    def __init__(self, directory: str, keep: int) -> None:
        self.dir = Path(directory)
        self.keep = keep
        outfile.check_writable_dir(directory, f"--dir {directory}")

    def name_for(self, kind: str, when: float) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(when))
        return f"{kind}-{stamp}.{int(when * 1000) % 1000:03d}Z{self.SUFFIX}"

    def write(self, kind: str, data: bytes, when: float) -> Path:
        path = self.dir / self.name_for(kind, when)
        outfile.write_file(path, data)
        self.prune(kind)
        return path

    def files(self, kind: str) -> list[Path]:
        return sorted(self.dir.glob(f"{kind}-*{self.SUFFIX}"))

    def prune(self, kind: str) -> None:
        for old in self.files(kind)[:-self.keep]:
            old.unlink(missing_ok=True)


@dataclass
class PushStats:
    ok: int = 0
    failed: int = 0          # windows given up on after all retries
    retries: int = 0
    dropped: int = 0         # windows dropped because pushing fell behind
    last_error: str = ""


@dataclass
class Push:
    kind: str
    data: bytes
    start: float
    end: float
    sample_rate: int


@dataclass
class PyroscopePusher:
    """POST /ingest?name=APP.KIND{labels}&from=&until=&format=pprof&sampleRate=
    with the pprof as the multipart `profile` part (as Pyroscope's agents send
    it). A background thread pushes, retrying with exponential backoff; failures
    are counted, never raised, so the profiling loop keeps going."""

    url: str
    app: str
    labels: dict[str, str] = field(default_factory=dict)
    retries: int = 3
    backoff: float = 0.5
    timeout: float = 10.0
    queue_size: int = 16
    stats: PushStats = field(default_factory=PushStats)

    def __post_init__(self) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=self.queue_size)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pyroscope-push", daemon=True)
        self.thread.start()

    def ingest_url(self, push: Push) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        params = {"name": f"{self.app}.{push.kind}{{{labels}}}", "from": int(push.start),
                  "until": max(int(push.end), int(push.start) + 1), "format": "pprof",
                  "spyName": "pytracekit"}
        if push.sample_rate:
            params["sampleRate"] = push.sample_rate
        base = self.url.rstrip("/")
        if not base.endswith("/ingest"):
            base += "/ingest"
        return f"{base}?{urllib.parse.urlencode(params)}"

    def submit(self, push: Push) -> None:
        try:
            self.queue.put_nowait(push)
        except queue.Full:
            self.stats.dropped += 1

    def _send(self, push: Push) -> None:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"profile\"; "
                f"filename=\"profile.pprof\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + push.data + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(
            self.ingest_url(push), data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                     "User-Agent": "pytracekit-cprofile"})
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read()

    def _push_with_retries(self, push: Push) -> None:
        for attempt in range(self.retries + 1):
            try:
                self._send(push)
                self.stats.ok += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as exc:
                self.stats.last_error = str(getattr(exc, "reason", exc) or exc)
                if attempt == self.retries or self.stopping.wait(self.backoff * 2 ** attempt):
                    break
                self.stats.retries += 1
        self.stats.failed += 1

    def _run(self) -> None:
        while True:
            push = self.queue.get()
            if push is None:
                return
            self._push_with_retries(push)

    def close(self, timeout: float = 15.0) -> None:
        """Send what is queued (bounded by `timeout`), then stop."""
        deadline = time.monotonic() + timeout
        while not self.queue.empty() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stopping.set()
        try:
            self.queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            pass
        self.thread.join(max(0.0, deadline - time.monotonic()))

"""Helpers for the export/cprofile tests: free ports, a real Prometheus server,
a local Pyroscope-style /ingest receiver."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except OSError:
        return 0, b""


class Prometheus:
    """Debian's prometheus on free localhost ports, scraping `target` every second."""

    def __init__(self, tmp_path, target: str) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("needs Prometheus (apt-get install prometheus; deps/apt/export.txt)")
        self.port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: pytracekit\n    scrape_interval: 1s\n"
            f"    static_configs:\n      - targets: ['{target}']\n")
        (tmp_path / "tsdb").mkdir()
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while http_get(f"http://127.0.0.1:{self.port}/-/ready")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise AssertionError(f"prometheus did not start: {self.proc.stderr.read()!r}")
            time.sleep(0.1)

    def query(self, expr: str) -> list[dict]:
        url = (f"http://127.0.0.1:{self.port}/api/v1/query?"
               + urllib.parse.urlencode({"query": expr}))
        status, body = http_get(url)
        assert status == 200, body
        reply = json.loads(body)
        assert reply["status"] == "success", reply
        return reply["data"]["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_value(self, expr: str, predicate, timeout: float = 15) -> float | None:
        """Poll the query API until the value satisfies `predicate` (scrapes every 1 s)."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.value(expr)
            if value is not None and predicate(value):
                return value
            time.sleep(0.25)
        return value

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class IngestReceiver:
    """A local HTTP server taking Pyroscope /ingest POSTs: records the query
    and the multipart `profile` part. `fail_first` answers 503 that many times."""

    def __init__(self, fail_first: int = 0) -> None:
        self.pushes: list[dict] = []
        self.failures_left = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.failures_left > 0:
                    receiver.failures_left -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                url = urllib.parse.urlsplit(self.path)
                receiver.pushes.append({"path": url.path,
                                        "query": dict(urllib.parse.parse_qsl(url.query)),
                                        "content_type": self.headers["Content-Type"],
                                        "profile": multipart_part(self.headers["Content-Type"],
                                                                  body, "profile")})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def multipart_part(content_type: str, body: bytes, name: str) -> bytes | None:
    """The bytes of form field `name` in a multipart/form-data body."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == name:
            return part.get_payload(decode=True)
    return None

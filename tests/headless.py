"""Headless Chromium for renderer tests: dump a page's DOM after its script
ran, or drive it over the DevTools protocol (on a pipe, so no port is opened):
evaluate script, click and hover at coordinates, take screenshots and read
their pixels back (a small PNG decoder, no Pillow).

Tests skip (never pass) when Chromium is not installed (deps/apt/flamegraph.txt).
"""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import struct
import subprocess
import tempfile
import time
import zlib

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--hide-scrollbars", "--force-device-scale-factor=1"]


def chromium() -> str:
    """The browser binary, or skip the test saying how to get one."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("needs headless Chromium (apt-get install chromium; deps/apt/flamegraph.txt)")


def dump_dom(url: str, width: int = 1200, height: int = 800) -> str:
    """The page's DOM once its scripts ran (Chromium's --dump-dom)."""
    with tempfile.TemporaryDirectory(prefix="ptk-chromium-") as profile_dir:
        res = subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile_dir}",
                              f"--window-size={width},{height}", "--dump-dom", url],
                             capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


class Browser:
    """One headless Chromium with one page, driven over --remote-debugging-pipe
    (Chromium reads commands on fd 3 and answers on fd 4, NUL-terminated JSON)."""

    def __init__(self, width: int = 1200, height: int = 800, timeout: float = 30) -> None:
        binary = chromium()
        self.timeout = timeout
        self._dir = tempfile.TemporaryDirectory(prefix="ptk-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_pipes() -> None:   # runs in the child before exec
            # Copies above 4 first, so wiring one cannot clobber the other.
            read_end = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self._dir.name}", "--remote-debugging-pipe",
             f"--window-size={width},{height}", "about:blank"],
            pass_fds=(3, 4), preexec_fn=wire_pipes, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.session = ""

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.call("Browser.close", session=False)
        except Exception:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to_browser)
        os.close(self._from_browser)
        self._dir.cleanup()

    def call(self, method: str, params: dict | None = None, *, session: bool = True) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                ready, _, _ = select.select([self._from_browser], [], [], self.timeout)
                chunk = os.read(self._from_browser, 1 << 20) if ready else b""
                assert chunk, f"Chromium did not answer {method}"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        deadline = time.monotonic() + self.timeout
        # A new target starts as about:blank, itself "complete": wait for the url.
        loaded = f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        while not self.evaluate(loaded):
            assert time.monotonic() < deadline, f"{url} did not finish loading"
            time.sleep(0.05)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression,
                                                "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def box(self, selector: str) -> dict:
        """The page box {x, y, width, height} of the first element matching selector."""
        return self.evaluate(f"(function () {{ const r = document.querySelector("
                             f"{json.dumps(selector)}).getBoundingClientRect(); return "
                             "{x: r.x, y: r.y, width: r.width, height: r.height}; })()")

    def mouse(self, kind: str, x: float, y: float) -> None:
        """A real mouse event at (x, y): kind is mouseMoved, or click for press + release."""
        if kind == "click":
            for event in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", {"type": event, "x": x, "y": y,
                                                       "button": "left", "clickCount": 1})
        else:
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y})

    def screenshot(self) -> "Image":
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        return Image.from_png(base64.b64decode(data))


class Image:
    """Decoded 8-bit RGB(A) pixels."""

    def __init__(self, width: int, height: int, channels: int, rows: list[bytes]) -> None:
        self.width, self.height, self.channels, self.rows = width, height, channels, rows

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        i = x * self.channels
        return tuple(self.rows[y][i:i + 3])

    def region_colours(self, x0: int, y0: int, x1: int, y1: int) -> dict[tuple, int]:
        """How many pixels of each colour the box [x0, x1) x [y0, y1) holds."""
        counts: dict[tuple, int] = {}
        for y in range(y0, y1):
            for x in range(x0, x1):
                p = self.pixel(x, y)
                counts[p] = counts.get(p, 0) + 1
        return counts

    @classmethod
    def from_png(cls, data: bytes) -> "Image":
        assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
        pos, idat = 8, b""
        while pos < len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if kind == b"IHDR":
                width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
                assert depth == 8 and colour in (2, 6) and interlace == 0, "unsupported PNG"
            elif kind == b"IDAT":
                idat += body
            pos += 12 + length
        channels = 3 if colour == 2 else 4
        raw, stride = zlib.decompress(idat), width * channels
        rows, prev = [], bytearray(stride)
        for y in range(height):
            start = y * (stride + 1)
            filt, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
            _unfilter(filt, line, prev, channels)
            rows.append(bytes(line))
            prev = line
        return cls(width, height, channels, rows)


def _unfilter(filt: int, line: bytearray, prev: bytearray, bpp: int) -> None:
    """Undo one PNG scanline filter in place (PNG spec section 9)."""
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up = prev[i]
        if filt == 1:
            line[i] = (line[i] + left) & 0xFF
        elif filt == 2:
            line[i] = (line[i] + up) & 0xFF
        elif filt == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif filt == 4:
            upleft = prev[i - bpp] if i >= bpp else 0
            p = left + up - upleft
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - upleft)
            pred = left if pa <= pb and pa <= pc else (up if pb <= pc else upleft)
            line[i] = (line[i] + pred) & 0xFF

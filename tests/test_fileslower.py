"""fileslower against ground truth: a script makes exactly two slow calls,
both timed by the script itself: a read of a FIFO that waits 200 ms for a
writer thread, and a write to a full pipe that waits 200 ms for a reader;
and 50 fast reads of a marker file (under the threshold)."""
import json
import sys
import textwrap

import pytest

from conftest import pytracekit
from netns_fixture import events_of, json_objects

SLOW = textwrap.dedent("""
    import fcntl, json, os, sys, threading, time
    fifo, marker, truth = sys.argv[1:4]
    os.mkfifo(fifo)
    with open(marker, "wb") as f:
        f.write(b"m" * 4096)
    fd = os.open(marker, os.O_RDONLY)
    for _ in range(50):
        os.pread(fd, 4096, 0)                         # fast
    timed, unblocked = [], []
    def later(call):                  # the other side, 0.2 s later; when, noted first
        def run():
            unblocked.append(time.monotonic())
            call()
        threading.Timer(0.2, run).start()
    def timed_call(direction, call):
        began = time.monotonic()
        n = call()
        # (direction, bytes, the least it can have taken, the most)
        timed.append((direction, n, unblocked[-1] - began, time.monotonic() - began))
    reader = os.open(fifo, os.O_RDWR)                 # O_RDWR: open does not wait
    later(lambda: os.write(reader, b"late"))
    timed_call("R", lambda: len(os.read(reader, 100)))
    r, w = os.pipe()
    fcntl.fcntl(w, 1031, 4096)                        # F_SETPIPE_SZ: one page
    os.write(w, b"f" * 4096)                          # now full
    later(lambda: os.read(r, 4096))
    timed_call("W", lambda: os.write(w, b"g" * 100))
    with open(truth, "w") as f:
        json.dump({"pid": os.getpid(), "tid": threading.get_native_id(), "calls": timed}, f)
""")


def run(tmp_path, *args: str):
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    paths = [str(tmp_path / n) for n in ("fifo", "fileslower-marker", "truth.json")]
    res = pytracekit("fileslower", *args, "--", sys.executable, str(script), *paths)
    assert res.returncode == 0, res.stderr
    return res, json.loads((tmp_path / "truth.json").read_text())


@pytest.mark.root
def test_the_two_slow_calls_with_their_latency(tmp_path):
    res, truth = run(tmp_path, "-a", "--json", "100")
    objects = json_objects(res.stdout, "fileslower")
    events = events_of(objects)
    assert [(e["pid"], e["tid"], e["direction"], e["bytes"]) for e in events] == \
        [(truth["pid"], truth["tid"], d, n) for d, n, _least, _most in truth["calls"]]
    assert [(e["file"], e["file_type"]) for e in events][0] == ("fifo", "O")
    for e, (_d, _n, least, most) in zip(events, truth["calls"]):
        assert least * 1000 <= e["lat_ms"] <= most * 1000 and least > 0.1
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == 2


@pytest.mark.root
def test_regular_files_only_by_default_and_bcc_columns(tmp_path):
    res, truth = run(tmp_path, "0")       # every call, regular files only
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME(s)", "COMM", "TID", "D", "BYTES", "LAT(ms)", "FILENAME"]
    ours = [line.split() for line in lines[1:] if line.split()[-1] == "fileslower-marker"]
    # the one write that made it, then the 50 reads
    assert [(r[2], r[3], r[4]) for r in ours] == \
        [(str(truth["pid"]), "W", "4096")] + [(str(truth["pid"]), "R", "4096")] * 50
    assert not [line for line in lines[1:] if line.split()[-1] == "fifo"]


def test_bad_threshold_is_one_line():
    res = pytracekit("fileslower", "-5")
    assert res.returncode == 2 and res.stderr.count("\n") == 1

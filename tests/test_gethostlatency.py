"""gethostlatency against ground truth: a script makes five lookups of names
libc answers without the network (/etc/hosts and numeric addresses), through
getaddrinfo, gethostbyname and gethostbyname2, timing each itself."""
import json
import subprocess
import sys
import textwrap

import pytest

from conftest import Tool, pytracekit
from netns_fixture import events_of, json_objects

LOOKUPS = textwrap.dedent("""
    import ctypes, json, socket, sys, time
    libc = ctypes.CDLL(None)
    calls = [
        ("localhost", lambda: socket.getaddrinfo("localhost", 80)),
        ("127.0.0.1", lambda: socket.getaddrinfo("127.0.0.1", None)),
        ("::1", lambda: socket.getaddrinfo("::1", 443)),
        ("localhost", lambda: libc.gethostbyname(b"localhost")),
        ("localhost", lambda: libc.gethostbyname2(b"localhost", socket.AF_INET)),
    ]
    took = []
    for host, call in calls:
        began = time.monotonic()
        call()
        took.append((host, time.monotonic() - began))
    with open(sys.argv[1], "w") as f:
        json.dump(took, f)
""")


@pytest.mark.root
def test_every_lookup_with_its_host_and_latency(tmp_path):
    script, truth_file = tmp_path / "lookups.py", tmp_path / "truth.json"
    script.write_text(LOOKUPS)
    res = pytracekit("gethostlatency", "--json", "--", sys.executable, str(script),
                     str(truth_file))
    assert res.returncode == 0, res.stderr
    truth = json.loads(truth_file.read_text())
    objects = json_objects(res.stdout, "gethostlatency")
    events = events_of(objects)
    assert [e["host"] for e in events] == [host for host, _ in truth]
    for e, (_host, took) in zip(events, truth):
        assert 0 < e["lat_ms"] <= took * 1000
    assert len({e["pid"] for e in events}) == 1
    assert objects[-1]["type"] == "loss" and objects[-1]["captured"] == len(truth)


@pytest.mark.root
def test_bcc_columns_and_pid_filter(tmp_path):
    script, truth_file = tmp_path / "lookups.py", tmp_path / "truth.json"
    script.write_text(LOOKUPS)
    res = pytracekit("gethostlatency", "--", sys.executable, str(script), str(truth_file))
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["TIME", "PID", "COMM", "LATms", "HOST"]
    assert [line.split()[4] for line in lines[1:]] == \
        [host for host, _ in json.loads(truth_file.read_text())]
    # -p: another process's lookups only (a sleeper makes none)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        with Tool("gethostlatency", "-p", str(sleeper.pid), "--json") as tool:
            subprocess.run([sys.executable, str(script), str(truth_file)], check=True)
            out, _ = tool.stop()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert events_of(json_objects(out, "gethostlatency")) == []

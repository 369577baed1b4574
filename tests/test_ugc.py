"""ugc on Debian's python3.11 (USDT python:gc__start/gc__done): a script with
automatic collection off runs gc.collect(g) a known number of times per
generation; ugc must show exactly those collections, per generation."""
import subprocess
from pathlib import Path

import pytest

from conftest import pytracekit
from snoop_helpers import one_line_error, summary, validated_json
from usdt_helpers import PYTHON, traced_python_script

PER_GENERATION = {0: 7, 1: 4, 2: 3}

# Waits for a go-file, then gc.collect(g) N_g times per generation, then says done.
SCRIPT = """
import gc, os, sys, time
gc.disable()
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.005)
for gen, n in ((0, int(sys.argv[2])), (1, int(sys.argv[3])), (2, int(sys.argv[4]))):
    for _ in range(n):
        gc.collect(gen)
open(go + ".done", "w").close()
time.sleep(30)   # killed by the test: interpreter shutdown would collect again
"""


def _traced(args: list[str], tmp_path: Path) -> tuple[str, str, int]:
    counts = [str(PER_GENERATION[g]) for g in (0, 1, 2)]
    return traced_python_script(["ugc", *args], SCRIPT, counts, tmp_path)


@pytest.mark.root
def test_every_collection_with_its_generation_and_the_summary(tmp_path):
    out, err, rc = _traced([], tmp_path)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["START", "TIME", "(us)", "DESCRIPTION"]
    events = [line for line in lines[1:] if "GC collected" in line]
    expected = [g for g in (0, 1, 2) for _ in range(PER_GENERATION[g])]
    assert [int(line.split()[3]) for line in events] == expected
    table = lines[lines.index("GEN     COUNT     TOTAL (us)     AVG (us)"):]
    assert [tuple(map(int, row.split()[:2])) for row in table[1:]] == \
        [(g, PER_GENERATION[g]) for g in (0, 1, 2)]
    assert summary(err) == {"captured": len(expected), "lost": 0, "unread": 0}


@pytest.mark.root
def test_json_filter_and_milliseconds(tmp_path):
    out, err, rc = _traced(["--json", "-m", "-F", "gen 1"], tmp_path)
    assert rc == 0, err
    objects = validated_json("ugc", out)
    events = [o for o in objects if o["type"] == "event"]
    assert [e["generation"] for e in events] == [1] * PER_GENERATION[1]
    assert all(e["elapsed_ns"] > 0 for e in events)
    gens = [o for o in objects if o["type"] == "generation"]
    assert [(g["generation"], g["count"]) for g in gens] == [(1, PER_GENERATION[1])]
    assert gens[0]["total_ns"] == sum(e["elapsed_ns"] for e in events)


@pytest.mark.root
def test_minimum_duration_drops_short_collections(tmp_path):
    """A young collection of an idle interpreter takes microseconds: -M 10000
    (10 s) leaves none, while the summary still comes."""
    out, err, rc = _traced(["-M", "10000", "-m"], tmp_path)
    assert rc == 0, err
    assert "GC collected" not in out
    assert summary(err)["captured"] == 0


@pytest.mark.root
def test_ends_when_its_python_exits():
    """-p: the run ends by itself when the process exits, with the summary."""
    proc = subprocess.Popen([PYTHON, "-c", "import gc, time; time.sleep(3); gc.collect(1)"])
    try:
        res = pytracekit("ugc", "-p", str(proc.pid), timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert res.returncode == 0, res.stderr
    assert "gen 1 GC collected" in res.stdout
    assert "GEN     COUNT" in res.stdout


def test_a_command_is_a_usage_error():
    res = pytracekit("ugc", "--", PYTHON, "-c", "pass")
    assert res.returncode == 2
    assert "unexpected extra arguments" in one_line_error(res.stderr, "ugc")


@pytest.mark.root
def test_no_pid_is_a_usage_error():
    res = pytracekit("ugc", "-d", "0")
    assert res.returncode == 2
    assert "give -p PID" in one_line_error(res.stderr, "ugc")


@pytest.mark.root
def test_not_python_is_one_line():
    proc = subprocess.Popen(["sleep", "30"])
    try:
        res = pytracekit("ugc", "-p", str(proc.pid), "-d", "0")
    finally:
        proc.kill()
        proc.wait()
    assert res.returncode == 1
    assert "has no python:gc__start USDT probe" in one_line_error(res.stderr, "ugc")
